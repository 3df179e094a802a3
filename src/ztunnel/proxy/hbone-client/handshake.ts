import type { Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { formatHostPort } from "../../state/ip.js";
import type { WorkloadCert } from "../../tls/ca.js";
import { clientTlsOptions, PeerIdentityError } from "../../tls/peer.js";
import { ProxyError } from "../errors.js";
import { PROXY_KEEPALIVE } from "../h2-options.js";
import type { HboneRequest } from "./types.js";

// TCP connect (in the source pod's netns, through its socket factory) and the mTLS handshake:
// TLS 1.3, ALPN h2, the server's URI SAN checked against the destination's identities
// (DESIGN §8). Resolves with a secured socket or rejects with a ProxyError; nothing is left
// open on failure.

export function dialHbone(req: HboneRequest, cert: WorkloadCert, timeoutMs: number): Promise<TLSSocket> {
  const addr = formatHostPort(req.hboneAddress.ip, req.hboneAddress.port);
  let raw: Socket | undefined;
  let tlsSock: TLSSocket | undefined;
  let timer: NodeJS.Timeout | undefined;
  const handshake = new Promise<TLSSocket>((resolve, reject) => {
    timer = setTimeout(() => reject(new ProxyError("HBONE_HANDSHAKE_TIMEOUT", `HBONE handshake with ${addr} took longer than ${timeoutMs} ms`)), timeoutMs);
    raw = req.socketFactory.connectTcp({ host: req.hboneAddress.ip, port: req.hboneAddress.port, noDelay: true, keepAlive: PROXY_KEEPALIVE });
    raw.once("error", (err) => reject(new ProxyError("HBONE_HANDSHAKE_FAILED", `connecting to ${addr} failed: ${err.message}`, { cause: err })));
    raw.once("connect", () => {
      if (raw === undefined) return;
      // Inherited by the TLS socket: the transport never stays half-open (streams do).
      raw.allowHalfOpen = false;
      const t = tlsConnect({ socket: raw, ...clientTlsOptions(cert, req.destinationIdentities) });
      tlsSock = t;
      t.once("error", (err) => {
        const code = err instanceof PeerIdentityError ? "HBONE_PEER_IDENTITY" : "HBONE_HANDSHAKE_FAILED";
        reject(new ProxyError(code, `TLS with ${addr} failed: ${err.message}`, { cause: err }));
      });
      t.once("secureConnect", () => {
        if (t.alpnProtocol !== "h2") {
          reject(new ProxyError("HBONE_HANDSHAKE_FAILED", `${addr} did not negotiate ALPN h2`));
          return;
        }
        resolve(t);
      });
    });
  });
  return handshake.then(
    (secured) => {
      clearTimeout(timer);
      return secured;
    },
    (err: unknown) => {
      clearTimeout(timer);
      tlsSock?.destroy();
      raw?.destroy();
      throw err;
    },
  );
}
