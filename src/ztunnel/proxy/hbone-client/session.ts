import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import type { TLSSocket } from "node:tls";
import { ProxyError } from "../errors.js";
import { CONNECTION_WINDOW, hboneSettings, MAX_SESSION_MEMORY_MB } from "../h2-options.js";

// The HTTP/2 layer on top of a secured HBONE socket. The pool only needs a session that has
// seen the server's SETTINGS; this is the one place that knows how it is made, so another
// HTTP/2 implementation plugs in here.

export interface SessionOptions {
  readonly handshakeTimeoutMs: number;
  readonly maxHeaderListSize: number;
  /**
   * Called synchronously once the server's SETTINGS arrived, before anyone can open a stream.
   * Returning an error refuses the session (it is destroyed and the promise rejects with it).
   */
  readonly adopt: (session: ClientHttp2Session) => Error | undefined;
  /** Errors after the session is up (each stream reports its own). */
  readonly onError: (err: Error) => void;
}

export function startSession(socket: TLSSocket, addr: string, o: SessionOptions): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = h2connect(`https://${addr}`, {
      createConnection: () => socket,
      settings: hboneSettings(o.maxHeaderListSize),
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      maxHeaderListPairs: 64,
    });
    session.setLocalWindowSize(CONNECTION_WINDOW);
    let timer: NodeJS.Timeout | undefined;
    const fail = (err: Error): void => {
      clearTimeout(timer);
      session.destroy();
      reject(new ProxyError("HBONE_HANDSHAKE_FAILED", `HTTP/2 with ${addr} failed: ${err.message}`, { cause: err }));
    };
    session.once("error", fail);
    // A server that refuses our certificate (TLS 1.3 verifies the client after our side of
    // the handshake completed) just closes: no SETTINGS ever arrive.
    const early = (): void => fail(new Error("closed by the server before HTTP/2 settings (client certificate refused?)"));
    session.once("close", early);
    timer = setTimeout(() => {
      session.destroy();
      reject(new ProxyError("HBONE_HANDSHAKE_TIMEOUT", `no HTTP/2 settings from ${addr} within ${o.handshakeTimeoutMs} ms`));
    }, o.handshakeTimeoutMs);
    // Streams may be opened before the server's SETTINGS arrive; waiting for them lets the
    // pool respect the server's SETTINGS_MAX_CONCURRENT_STREAMS from the first stream.
    session.once("remoteSettings", () => {
      clearTimeout(timer);
      session.off("error", fail);
      session.off("close", early);
      session.on("error", o.onError);
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
