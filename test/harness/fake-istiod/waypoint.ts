import { connect as h2connect, createSecureServer, type ClientHttp2Session, type ServerHttp2Stream } from "node:http2";
import type { Server, Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { generateLeafKey } from "../../../src/ztunnel/tls/leaf-key.js";
import type { SocketFactory } from "../../../src/sockets/socket-factory.js";
import type { FakePki } from "./pki.js";

// A small waypoint of ours for tests (DESIGN §13): an HBONE server with the waypoint's identity
// (a certificate from the fake istiod's CA) that records each CONNECT's authority and the
// client's identity, then forwards the stream over HBONE, with its own identity, to the
// destination's ztunnel (`forwardTo` maps the authority it received to the pod address).

export interface WaypointRecord {
  readonly authority: string;
  readonly peer: string;
}

export interface WaypointCerts {
  readonly certPem: string;
  readonly keyPem: string;
  readonly rootPem: string;
}

/** A key and certificate for `uri`, signed by the fake istiod's intermediate (sent along). */
export function workloadCerts(pki: FakePki, uri: string): WaypointCerts {
  const key = generateLeafKey();
  return { certPem: `${pki.signLeaf(key.spki, uri, 3_600_000)}${pki.intermediatePem}`, keyPem: key.keyPem, rootPem: pki.rootPem };
}

const TLS = { minVersion: "TLSv1.3", maxVersion: "TLSv1.3", ALPNProtocols: ["h2"] } as const;

/** One HBONE CONNECT from a socket factory (a netns) to `hbone` with `authority`, as `certs`. */
export async function hboneConnect(factory: SocketFactory, hbone: { host: string; port: number }, authority: string, certs: WaypointCerts): Promise<{ status: number; stream: import("node:http2").ClientHttp2Stream; session: ClientHttp2Session }> {
  const raw = factory.connectTcp({ host: hbone.host, port: hbone.port });
  const session = h2connect(`https://${hbone.host}:${hbone.port}`, {
    createConnection: () => tlsConnect({ socket: raw, cert: certs.certPem, key: certs.keyPem, ca: certs.rootPem, servername: "", checkServerIdentity: () => undefined, ...TLS }),
  });
  session.on("error", () => undefined);
  const stream = session.request({ ":method": "CONNECT", ":authority": authority });
  const status = await new Promise<number>((resolve, reject) => {
    stream.once("response", (h) => resolve(Number(h[":status"])));
    stream.once("error", reject);
    session.once("error", reject);
  });
  return { status, stream, session };
}

export class FakeWaypoint {
  readonly records: WaypointRecord[] = [];
  private readonly sessions = new Set<ClientHttp2Session>();

  private constructor(private readonly listener: Server) {}

  /** Listens on `port` in the netns of `factory`; forwards with the same factory. */
  static async start(factory: SocketFactory, port: number, certs: WaypointCerts, forwardTo: (authority: string) => { host: string; port: number; authority: string } | undefined): Promise<FakeWaypoint> {
    const h2 = createSecureServer({ cert: certs.certPem, key: certs.keyPem, ca: certs.rootPem, requestCert: true, rejectUnauthorized: true, ...TLS });
    const listener = await factory.listenTcp({ address: "0.0.0.0", port });
    const wp = new FakeWaypoint(listener);
    listener.on("connection", (s: Socket) => h2.emit("connection", s));
    h2.on("stream", (stream: ServerHttp2Stream, headers) => {
      // Either side may be reset by its peer (a refused or closed connection): not a test failure.
      stream.on("error", () => undefined);
      const authority = String(headers[":authority"] ?? "");
      const peer = String((stream.session?.socket as TLSSocket | undefined)?.getPeerCertificate().subjectaltname ?? "").replace(/^URI:/, "");
      wp.records.push({ authority, peer });
      const next = forwardTo(authority);
      if (headers[":method"] !== "CONNECT" || next === undefined) {
        stream.respond({ ":status": 503 });
        stream.end();
        return;
      }
      hboneConnect(factory, next, next.authority, certs).then(
        ({ status, stream: up, session }) => {
          wp.sessions.add(session);
          up.on("error", () => stream.close());
          stream.respond({ ":status": status });
          if (status !== 200) {
            stream.end();
            session.close();
            return;
          }
          stream.pipe(up);
          up.pipe(stream);
          up.on("close", () => session.close());
        },
        () => {
          stream.respond({ ":status": 503 });
          stream.end();
        },
      );
    });
    return wp;
  }

  /** The port it listens on (the one asked for, or the kernel's pick for 0). */
  get port(): number {
    return (this.listener.address() as { port: number }).port;
  }

  close(): void {
    for (const s of this.sessions) s.destroy();
    this.listener.close();
  }
}
