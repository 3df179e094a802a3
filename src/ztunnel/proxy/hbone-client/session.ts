import type { TLSSocket } from "node:tls";
import { H2Connection } from "../h2/connection.js";
import { ProxyError } from "../errors.js";
import { hboneH2Options } from "../h2-options.js";

// The HTTP/2 layer on top of a secured HBONE socket: our lean HBONE HTTP/2 (proxy/h2/), not
// node:http2. The pool only needs a connection that has seen the server's SETTINGS; this is the
// one place that knows how it is made.

export interface SessionOptions {
  readonly handshakeTimeoutMs: number;
  readonly maxHeaderListSize: number;
  /**
   * Called synchronously once the server's SETTINGS arrived, before anyone can open a stream.
   * Returning an error refuses the session (it is destroyed and the promise rejects with it).
   */
  readonly adopt: (session: H2Connection) => Error | undefined;
  /** Why the connection failed after it was up (each stream reports its own). */
  readonly onError: (err: Error) => void;
}

export function startSession(socket: TLSSocket, addr: string, o: SessionOptions): Promise<H2Connection> {
  return new Promise((resolve, reject) => {
    const session = new H2Connection(socket, hboneH2Options("client", o.maxHeaderListSize));
    // A server that refuses our certificate (TLS 1.3 verifies the client after our side of
    // the handshake completed) just closes: no SETTINGS ever arrive.
    const early = (err: Error | undefined): void => {
      clearTimeout(timer);
      const why = err?.message ?? "closed by the server before HTTP/2 settings (client certificate refused?)";
      reject(new ProxyError("HBONE_HANDSHAKE_FAILED", `HTTP/2 with ${addr} failed: ${why}`, { cause: err }));
    };
    session.once("close", early);
    const timer = setTimeout(() => {
      session.off("close", early);
      session.destroy();
      reject(new ProxyError("HBONE_HANDSHAKE_TIMEOUT", `no HTTP/2 settings from ${addr} within ${o.handshakeTimeoutMs} ms`));
    }, o.handshakeTimeoutMs);
    // Waiting for the server's SETTINGS lets the pool respect its SETTINGS_MAX_CONCURRENT_STREAMS
    // from the first stream.
    session.once("remoteSettings", () => {
      clearTimeout(timer);
      session.off("close", early);
      session.once("close", (err) => {
        if (err !== undefined) o.onError(err);
      });
      const refused = o.adopt(session);
      if (refused !== undefined) {
        session.destroy();
        reject(refused);
        return;
      }
      resolve(session);
    });
  });
}
