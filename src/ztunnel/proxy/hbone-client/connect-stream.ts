import { errorMessage } from "../../../shared/errors.js";
import { formatHostPort } from "../../state/ip.js";
import { ProxyError } from "../errors.js";
import { ErrorCode } from "../h2/frames.js";
import { headerObject } from "../h2/headers.js";
import type { HeaderField } from "../h2/hpack-table.js";
import type { H2Stream } from "../h2/stream.js";
import type { HboneRequest } from "./types.js";

// One CONNECT stream (DESIGN §8): the request headers for a tunnelled connection and the wait
// for the peer's answer (200 then bytes; anything else is a ProxyError carrying the status).

export function connectHeaders(req: HboneRequest): HeaderField[] {
  let forwarded = `for="${formatHostPort(req.client.ip, req.client.port)}"`;
  if (req.serviceHost !== undefined) forwarded += `;host=${req.serviceHost}`;
  const headers: HeaderField[] = [
    [":method", "CONNECT"],
    [":authority", formatHostPort(req.target.ip, req.target.port)],
    ["forwarded", forwarded],
  ];
  if (req.traceparent !== undefined) headers.push(["traceparent", req.traceparent]);
  if (req.baggage !== undefined) headers.push(["baggage", req.baggage]);
  return headers;
}

export function awaitResponse(stream: H2Stream, req: HboneRequest): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    // Whichever comes first settles; the three listeners then stay and do nothing. Removing a
    // listener deletes a key of the stream's listener table, which leaves it a slow dictionary
    // for the rest of the tunnel.
    let settled = false;
    const target = (): string => formatHostPort(req.target.ip, req.target.port);
    stream.on("error", (err: Error) => {
      if (settled) return;
      settled = true;
      reject(new ProxyError("HBONE_STREAM_RESET", `CONNECT ${target()} failed: ${errorMessage(err)}`, { cause: err }));
    });
    stream.on("close", () => {
      if (settled) return;
      settled = true;
      reject(new ProxyError("HBONE_STREAM_RESET", `CONNECT ${target()}: stream closed before a response (code ${stream.rstCode ?? "none"})`));
    });
    stream.on("response", (fields: readonly HeaderField[]) => {
      if (settled) return;
      settled = true;
      const headers = headerObject(fields);
      const status = Number(headers[":status"]);
      if (status === 200) {
        resolve(headers);
        return;
      }
      stream.close(ErrorCode.CANCEL);
      reject(new ProxyError("HBONE_STATUS", `CONNECT ${target()} answered ${status}`, { peerStatus: status }));
    });
  });
}
