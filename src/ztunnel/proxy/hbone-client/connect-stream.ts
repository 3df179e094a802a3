import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import { errorMessage } from "../../../shared/errors.js";
import { formatHostPort } from "../../state/ip.js";
import { ProxyError } from "../errors.js";
import type { HboneRequest } from "./types.js";

// One CONNECT stream (DESIGN §8): the request headers for a tunnelled connection and the wait
// for the peer's answer (200 then bytes; anything else is a ProxyError carrying the status).

export function connectHeaders(req: HboneRequest): Record<string, string> {
  let forwarded = `for="${formatHostPort(req.client.ip, req.client.port)}"`;
  if (req.serviceHost !== undefined) forwarded += `;host=${req.serviceHost}`;
  const headers: Record<string, string> = {
    [h2.HTTP2_HEADER_METHOD]: h2.HTTP2_METHOD_CONNECT,
    [h2.HTTP2_HEADER_AUTHORITY]: formatHostPort(req.target.ip, req.target.port),
    forwarded,
  };
  if (req.traceparent !== undefined) headers.traceparent = req.traceparent;
  if (req.baggage !== undefined) headers.baggage = req.baggage;
  return headers;
}

export function awaitResponse(stream: ClientHttp2Stream, req: HboneRequest): Promise<IncomingHttpHeaders> {
  const target = formatHostPort(req.target.ip, req.target.port);
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      cleanup();
      reject(new ProxyError("HBONE_STREAM_RESET", `CONNECT ${target} failed: ${errorMessage(err)}`, { cause: err }));
    };
    const onClose = (): void => {
      cleanup();
      reject(new ProxyError("HBONE_STREAM_RESET", `CONNECT ${target}: stream closed before a response (code ${stream.rstCode ?? "none"})`));
    };
    const onResponse = (headers: IncomingHttpHeaders): void => {
      cleanup();
      const status = Number(headers[h2.HTTP2_HEADER_STATUS]);
      if (status === 200) {
        resolve(headers);
        return;
      }
      stream.close(h2.NGHTTP2_CANCEL);
      reject(new ProxyError("HBONE_STATUS", `CONNECT ${target} answered ${status}`, { peerStatus: status }));
    };
    const cleanup = (): void => {
      stream.off("error", onError);
      stream.off("close", onClose);
      stream.off("response", onResponse);
    };
    stream.once("error", onError);
    stream.once("close", onClose);
    stream.once("response", onResponse);
  });
}
