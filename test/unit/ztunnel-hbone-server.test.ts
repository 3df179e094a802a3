import { X509Certificate } from "node:crypto";
import { connect as h2connect, constants as h2, type ClientHttp2Session, type OutgoingHttpHeaders } from "node:http2";
import { connect as netConnect, Socket } from "node:net";
import tls, { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { describe, expect, it, vi } from "vitest";
import { ProxyError } from "../../src/ztunnel/proxy/errors.js";
import type { AuthorizationContext, CertProvider, InboundRecord } from "../../src/ztunnel/proxy/hbone-server.js";
import type { WorkloadCert } from "../../src/ztunnel/tls/ca.js";
import { CertManager } from "../../src/ztunnel/tls/cert-manager.js";
import { clientTlsOptions } from "../../src/ztunnel/tls/peer.js";
import { CLIENT_ID, HboneEnv, SERVER_ID, useHboneEnvs } from "../fixtures/ztunnel-hbone-env.js";
import { LoopbackSocketFactory } from "../fixtures/ztunnel-loopback-factory.js";
import { certFor, foreignCa, id, testCa } from "../fixtures/ztunnel-pki.js";
import { captureLogs } from "../fixtures/log-capture.js";

/** A raw HTTP/2 session to the HBONE server, for requests our client would never send. */
async function rawSession(env: HboneEnv, tlsOpts: ConnectionOptions): Promise<ClientHttp2Session> {
  const sock = tlsConnect({ host: "127.0.0.1", port: env.hbonePort, ...tlsOpts });
  await new Promise<void>((resolve, reject) => {
    sock.once("secureConnect", () => resolve());
    sock.once("error", reject);
  });
  const session = h2connect(`https://127.0.0.1:${env.hbonePort}`, { createConnection: () => sock });
  session.on("error", () => undefined);
  env.closers.push(() => session.destroy());
  return session;
}

function statusOf(session: ClientHttp2Session, headers: OutgoingHttpHeaders): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: false });
    req.once("response", (h) => resolve(Number(h[h2.HTTP2_HEADER_STATUS])));
    req.once("error", reject);
    req.once("close", () => reject(new Error(`stream closed without a response (rst ${req.rstCode})`)));
  });
}

async function clientOpts(identity = CLIENT_ID): Promise<ConnectionOptions> {
  return clientTlsOptions(await certFor(identity), [SERVER_ID]);
}

async function statusFor(env: HboneEnv, target: { ip: string; port: number }): Promise<number | string> {
  try {
    const s = await env.pool.connect(env.request(target));
    s.stream.close();
    return 200;
  } catch (err) {
    if (err instanceof ProxyError && err.code === "HBONE_STATUS") return err.peerStatus ?? -1;
    return err instanceof ProxyError ? err.code : String(err);
  }
}

describe("HBONE server: CONNECT validation and answers", () => {
  const newEnv = useHboneEnvs();
  let env: HboneEnv;

  it("answers 400 for an IP that is not the pod's and for ztunnel's own ports, 503 for a closed app port", async () => {
    const records: InboundRecord[] = [];
    env = await newEnv({ server: { onRecord: (r) => records.push(r) } });
    const closedPort = await freePort();
    expect(await statusFor(env, { ip: "127.0.0.9", port: 80 })).toBe(400);
    for (const port of [15001, 15006, 15008]) expect(await statusFor(env, { ip: "127.0.0.1", port })).toBe(400);
    expect(await statusFor(env, { ip: "127.0.0.1", port: closedPort })).toBe(503);
    await waitFor(() => records.length === 5);
    expect(records.map((r) => [r.status, r.error?.code, r.error?.responseFlag])).toEqual([
      [400, "BAD_REQUEST", "DPE"],
      [400, "BAD_REQUEST", "DPE"],
      [400, "BAD_REQUEST", "DPE"],
      [400, "BAD_REQUEST", "DPE"],
      [503, "UPSTREAM_CONNECT_FAILED", "UF"],
    ]);
    expect(records[0]?.source).toEqual(CLIENT_ID);
  });

  it("answers 400 for a request that is not CONNECT and for an authority that is not ip:port", async () => {
    env = await newEnv();
    const session = await rawSession(env, await clientOpts());
    expect(await statusOf(session, { ":method": "GET", ":path": "/", ":authority": "127.0.0.1:80" })).toBe(400);
    expect(await statusOf(session, { ":method": "CONNECT", ":authority": "example.com:80" })).toBe(400);
    expect(await statusOf(session, { ":method": "CONNECT", ":authority": "127.0.0.1" })).toBe(400);
    expect(await statusOf(session, { ":method": "CONNECT", ":authority": "127.0.0.1:99999" })).toBe(400);
  });

  it("answers 401 when the authorizer denies, and tells it who is asking for what", async () => {
    const seen: AuthorizationContext[] = [];
    env = await newEnv({
      server: {
        authorizer: {
          authorize: (ctx) => {
            seen.push(ctx);
            return { allow: false, policy: undefined, reason: "denied by test policy" };
          },
        },
      },
    });
    const app = await env.app((s) => s.end());
    expect(await statusFor(env, { ip: "127.0.0.1", port: app.port })).toBe(401);
    expect(seen).toEqual([{ source: CLIENT_ID, sourceIp: "127.0.0.5", destination: { ip: "127.0.0.1", port: app.port } }]);
  });
});

describe("HBONE server: failures on its side", () => {
  const newEnv = useHboneEnvs();
  let env: HboneEnv;

  it("fails closed (401) when the authorizer throws", async () => {
    env = await newEnv({
      server: {
        authorizer: {
          authorize: () => {
            throw new Error("policy engine broken");
          },
        },
      },
    });
    const app = await env.app((s) => s.end());
    expect(await statusFor(env, { ip: "127.0.0.1", port: app.port })).toBe(401);
  });

  it("answers 503 when the app never answers the connect", async () => {
    // Upstream sockets that never connect (a black-holed SYN).
    class Blackhole extends LoopbackSocketFactory {
      override connectTcp(): Socket {
        const s = new Socket();
        this.connected.push(s);
        return s;
      }
    }
    const records: InboundRecord[] = [];
    env = await newEnv({ server: { socketFactory: new Blackhole(), upstreamConnectTimeoutMs: 150, onRecord: (r) => records.push(r) } });
    // The upstream never connects: only the connect timeout can produce the 503.
    expect(await statusFor(env, { ip: "127.0.0.1", port: 9 })).toBe(503);
    await waitFor(() => records.length === 1);
    expect(records[0]?.error?.message).toContain("ETIMEDOUT");
  });
});

describe("HBONE server: who may connect", () => {
  const newEnv = useHboneEnvs();
  let env: HboneEnv;

  it("refuses a client certificate from the same root but another trust domain", async () => {
    env = await newEnv();
    const app = await env.app((s) => s.pipe(s));
    const err = await env.pool.connect(env.request({ ip: "127.0.0.1", port: app.port }, { sourceIdentity: id("client-ns", "client-sa", "other.domain") })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).code).toBe("HBONE_HANDSHAKE_FAILED");
    // The same client from our trust domain gets through.
    const ok = await env.pool.connect(env.request({ ip: "127.0.0.1", port: app.port }));
    ok.stream.close();
  });

  it("refuses a client without a certificate and one from a foreign root", async () => {
    env = await newEnv();
    const noCert: ConnectionOptions = { ...(await clientOpts()), cert: undefined, key: undefined };
    const foreign = await certFor(CLIENT_ID, await foreignCa());
    const foreignOpts: ConnectionOptions = { ...clientTlsOptions(foreign, [SERVER_ID]), ca: (await certFor(CLIENT_ID)).rootPem };
    for (const opts of [noCert, foreignOpts]) {
      const outcome = await rawSession(env, opts).then(
        (s) => statusOf(s, { ":method": "CONNECT", ":authority": "127.0.0.1:80" }).then(String, (e: Error) => `refused: ${e.message}`),
        (e: Error) => `refused: ${e.message}`,
      );
      expect(outcome).toMatch(/^refused/);
    }
  });

  it("the client refuses a server whose SAN is not the expected identity", async () => {
    env = await newEnv();
    const err = await env.pool.connect(env.request({ ip: "127.0.0.1", port: 80 }, { destinationIdentities: [id("server-ns", "someone-else")] })).catch((e: unknown) => e);
    expect((err as ProxyError).code).toBe("HBONE_PEER_IDENTITY");
    expect((err as Error).message).toContain("spiffe://cluster.local/ns/server-ns/sa/server-sa");
  });

  it("the client refuses a server certificate from a foreign root", async () => {
    const certs = new CertManager(await foreignCa());
    env = await newEnv({ server: { certs } });
    const err = await env.pool.connect(env.request({ ip: "127.0.0.1", port: 80 })).catch((e: unknown) => e);
    expect((err as ProxyError).code).toBe("HBONE_HANDSHAKE_FAILED");
    certs.close();
  });
});

describe("HBONE server: certificate renewal", () => {
  const newEnv = useHboneEnvs();
  let env: HboneEnv;

  it("serves the renewed certificate to new connections", async () => {
    const ca = await testCa();
    const certs = new CertManager({ rootPem: ca.rootPem, issue: (identity) => ca.issue(identity, { ttlMs: 2_000 }) });
    env = await newEnv({ server: { certs } });
    env.closers.push(() => certs.close());
    const before = await servedSerial(env);
    await new Promise<void>((resolve) => certs.onRenew(SERVER_ID, () => resolve()));
    const after = await servedSerial(env);
    expect(after).not.toBe(before);
    expect(after).toBe(new X509Certificate(certs.peek(SERVER_ID)?.certPem ?? "").serialNumber);
  });

  it("builds the pod's TLS context at its first connection, keeps it, and rebuilds it once after a renewal", async () => {
    const ca = await testCa();
    const certs = new ManualCerts(await ca.issue(SERVER_ID));
    const spy = vi.spyOn(tls, "createSecureContext");
    env = await newEnv({ server: { certs } });
    env.closers.push(() => spy.mockRestore());
    // Server contexts are the ones carrying the pod's certificate (clients carry their own).
    const builtFor = (cert: WorkloadCert): number => spy.mock.calls.filter(([o]) => o?.cert === cert.certPem).length;
    const first = certs.current;
    expect(builtFor(first)).toBe(0);
    expect(await servedSerial(env)).toBe(serialOf(first));
    expect(await servedSerial(env)).toBe(serialOf(first));
    expect(builtFor(first)).toBe(1);

    const second = await ca.issue(SERVER_ID);
    certs.renew(second);
    expect(builtFor(second)).toBe(0);
    expect(await servedSerial(env)).toBe(serialOf(second));
    expect(await servedSerial(env)).toBe(serialOf(second));
    expect(builtFor(second)).toBe(1);
    expect(builtFor(first)).toBe(1);
  });

  it("refuses connections with a warning while the certificate is unusable, and serves the renewed one", async () => {
    const ca = await testCa();
    const good = await ca.issue(SERVER_ID);
    const other = await ca.issue(CLIENT_ID);
    // A key that does not match the certificate: no TLS context can be built from it.
    const certs = new ManualCerts({ ...good, keyPem: other.keyPem });
    const { log, lines } = captureLogs();
    env = await newEnv({ server: { certs, log } });
    const err = await servedSerial(env).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    const warning = lines().find((l) => String(l.msg).includes("cannot build a TLS context"));
    expect(warning?.identity).toBe("spiffe://cluster.local/ns/server-ns/sa/server-sa");
    expect(String(warning?.err)).toMatch(/key/i);
    expect(env.server.stats.connections).toBe(0);

    certs.renew(good);
    expect(await servedSerial(env)).toBe(serialOf(good));
  });
});

describe("HBONE server: limits", () => {
  const newEnv = useHboneEnvs();
  let env: HboneEnv;

  it("caps concurrent connections per pod and refuses the excess", async () => {
    env = await newEnv({ server: { maxConnections: 1 } });
    const app = await env.app((s) => s.pipe(s));
    const target = { ip: "127.0.0.1", port: app.port };
    const first = await env.pool.connect(env.request(target, { sourcePodUid: "a" }));
    const podB = new LoopbackSocketFactory("127.0.0.6");
    env.closers.push(() => podB.close());
    await expect(env.pool.connect(env.request(target, { sourcePodUid: "b", socketFactory: podB }))).rejects.toBeInstanceOf(ProxyError);
    expect(env.server.stats.rejected).toBe(1);
    first.stream.close();
  });

  it("drops a peer that never completes the TLS handshake", async () => {
    env = await newEnv({ server: { handshakeTimeoutMs: 200 } });
    // The client sends nothing: only the server's handshake timeout can close the socket.
    const sock = netConnect({ host: "127.0.0.1", port: env.hbonePort });
    sock.on("error", () => undefined);
    await new Promise((r) => sock.once("close", r));
  });

  it("refuses a header list larger than the advertised limit", async () => {
    env = await newEnv({ server: { maxHeaderListSize: 4096 } });
    const session = await rawSession(env, await clientOpts());
    // Let the server's SETTINGS arrive first so both sides know the limit.
    await new Promise((r) => session.once("remoteSettings", r));
    expect(session.remoteSettings.maxHeaderListSize).toBe(4096);
    expect(session.remoteSettings.maxConcurrentStreams).toBe(1000);
    const outcome = await statusOf(session, { ":method": "CONNECT", ":authority": "127.0.0.1:80", "x-big": "a".repeat(16_384) }).then(
      (status) => `status ${status}`,
      () => "refused",
    );
    expect(outcome).not.toBe("status 200");
    expect(outcome).not.toBe("status 503");
  });
});

/** The serial of the certificate the HBONE server presents to a new connection. */
async function servedSerial(env: HboneEnv): Promise<string> {
  const sock = tlsConnect({ host: "127.0.0.1", port: env.hbonePort, ...(await clientOpts()) });
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once("secureConnect", () => resolve());
      sock.once("error", reject);
    });
    return sock.getPeerX509Certificate()?.serialNumber ?? "";
  } finally {
    sock.destroy();
  }
}

function serialOf(cert: WorkloadCert): string {
  return new X509Certificate(cert.certPem).serialNumber;
}

/** A certificate provider whose renewals the test triggers. */
class ManualCerts implements CertProvider {
  private readonly listeners = new Set<(cert: WorkloadCert) => void>();
  constructor(public current: WorkloadCert) {}
  get(): Promise<WorkloadCert> {
    return Promise.resolve(this.current);
  }
  onRenew(_identity: unknown, listener: (cert: WorkloadCert) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  renew(cert: WorkloadCert): void {
    this.current = cert;
    for (const l of this.listeners) l(cert);
  }
}


async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}
