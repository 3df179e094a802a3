// The Node.js floor of the pod-to-pod rows: the least a Node program can do to carry a pod's
// bytes the way stunnel does, so the bench can tell what ztunnel's own layers cost (HTTP/2,
// policy, in-pod sockets, telemetry) from what Node itself costs. No HTTP/2, no checks beyond
// the TLS chain, one event loop per process, `pipe()` both ways: every byte still passes through
// Node's net/tls streams and TLSWrap, as in ztunnel (issue 20's rule: TLS stays in Node).
//   node relay.js tcp        <listen host:port>=<connect host:port> ...
//   node relay.js tls-client <listen>=<connect> ... --cert F --key F --ca F   (plaintext in, TLS out)
//   node relay.js tls-server <listen>=<connect> ... --cert F --key F --ca F   (TLS in, plaintext out)
// Prints "ready" once every listener is bound. Not part of ztunnel; started by bench/floor/tunnel.ts.
import { readFileSync } from "node:fs";
import { connect as netConnect, createServer as netServer, type Server, type Socket } from "node:net";
import { connect as tlsConnect, createServer as tlsServer, TLSSocket, type ConnectionOptions, type TlsOptions } from "node:tls";
import { FLOOR_CIPHERSUITE, FloorUsageError, parseFloorArgs, type FloorArgs, type FloorForward } from "./args.js";

function args(): FloorArgs {
  try {
    return parseFloorArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof FloorUsageError)) throw err;
    process.stderr.write(`floor relay: ${err.message}\n`);
    process.exit(2);
  }
}

const cfg = args();
const pki = cfg.pki === undefined ? undefined : { cert: readFileSync(cfg.pki.certFile), key: readFileSync(cfg.pki.keyFile), ca: readFileSync(cfg.pki.caFile) };
// The same TLS as the stunnel reference: 1.3 only, one AES-GCM suite, the peer's chain verified
// both ways (stunnel's verifyChain: no host name check).
const tlsBase = pki === undefined ? undefined : { ...pki, minVersion: "TLSv1.3" as const, maxVersion: "TLSv1.3" as const, ciphers: FLOOR_CIPHERSUITE };

/** Copies both ways; a FIN is passed on as a FIN, an error resets both sides. */
function join(a: Socket, b: Socket): void {
  a.setNoDelay(true);
  b.setNoDelay(true);
  const cut = (): void => {
    for (const s of [a, b]) {
      if (s.destroyed) continue;
      // resetAndDestroy needs a TCP handle; a TLS socket is closed instead.
      if (s instanceof TLSSocket) s.destroy();
      else s.resetAndDestroy();
    }
  };
  a.on("error", cut);
  b.on("error", cut);
  a.pipe(b);
  b.pipe(a);
}

function dialUpstream(f: FloorForward): Socket {
  if (cfg.mode === "tls-client") {
    const opts: ConnectionOptions = { ...tlsBase, host: f.connect.host, port: f.connect.port, checkServerIdentity: () => undefined };
    const up = tlsConnect(opts);
    // A FIN from the server side must not end our half (tls.connect's options do not carry this).
    up.allowHalfOpen = true;
    return up;
  }
  return netConnect({ host: f.connect.host, port: f.connect.port, allowHalfOpen: true });
}

function listen(f: FloorForward): Promise<Server> {
  const onClient = (client: Socket): void => join(client, dialUpstream(f));
  const server =
    cfg.mode === "tls-server"
      ? tlsServer({ ...(tlsBase as TlsOptions), requestCert: true, rejectUnauthorized: true, allowHalfOpen: true }, onClient)
      : netServer({ allowHalfOpen: true }, onClient);
  // A failed handshake is one connection's problem, not the relay's.
  server.on("tlsClientError", (_err: Error, s: Socket) => s.destroy());
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(f.listen.port, f.listen.host, () => resolve(server));
  });
}

Promise.all(cfg.forwards.map(listen)).then(
  () => process.stdout.write("ready\n"),
  (err: unknown) => {
    process.stderr.write(`floor relay: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
