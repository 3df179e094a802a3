import { createServer as createH2Server, type IncomingHttpHeaders, type ServerHttp2Session } from "node:http2";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { describe, expect, it } from "vitest";
import { CONNECTION_WINDOW, MAX_FRAME_SIZE, STREAM_WINDOW } from "../../src/ztunnel/proxy/h2-options.js";
import { serverTlsOptions } from "../../src/ztunnel/tls/peer.js";
import { closeServer, HboneEnv, listen, SERVER_ID, useHboneEnvs } from "../fixtures/ztunnel-hbone-env.js";
import { certFor } from "../fixtures/ztunnel-pki.js";

// What our HBONE client puts on the wire: the TLS ClientHello (seen through a recording TCP
// proxy) and the CONNECT request and settings (seen by a bare Node HTTP/2 server).

interface Hello {
  alpn: string[];
  hasSni: boolean;
  versions: number[];
}

function parseClientHello(buf: Buffer): Hello {
  if (buf[0] !== 0x16) throw new Error(`not a handshake record: ${buf[0]}`);
  const recLen = buf.readUInt16BE(3);
  const hs = buf.subarray(5, 5 + recLen);
  if (hs[0] !== 0x01) throw new Error("not a ClientHello");
  let p = 4 + 2 + 32; // header, legacy_version, random
  p += 1 + (hs[p] ?? 0); // session id
  p += 2 + hs.readUInt16BE(p); // cipher suites
  p += 1 + (hs[p] ?? 0); // compression methods
  const extEnd = p + 2 + hs.readUInt16BE(p);
  p += 2;
  const out: Hello = { alpn: [], hasSni: false, versions: [] };
  while (p < extEnd) {
    const type = hs.readUInt16BE(p);
    const len = hs.readUInt16BE(p + 2);
    const data = hs.subarray(p + 4, p + 4 + len);
    if (type === 0x0000) out.hasSni = true;
    if (type === 0x0010) {
      for (let q = 2; q < data.length; q += 1 + (data[q] ?? 0)) out.alpn.push(data.subarray(q + 1, q + 1 + (data[q] ?? 0)).toString());
    }
    if (type === 0x002b) for (let q = 1; q < data.length; q += 2) out.versions.push(data.readUInt16BE(q));
    p += 4 + len;
  }
  return out;
}

describe("HBONE on the wire", () => {
  const newEnv = useHboneEnvs();
  let env: HboneEnv;

  it("the ClientHello offers ALPN h2, TLS 1.3 only, and no SNI", async () => {
    env = await newEnv();
    const app = await env.app((s) => s.pipe(s));
    const firstBytes: Buffer[] = [];
    // Recording proxy between our client and our server.
    const proxy = createServer((down: Socket) => {
      const up = connect({ host: "127.0.0.1", port: env.hbonePort });
      const chunks: Buffer[] = [];
      down.on("data", (c: Buffer) => {
        if (chunks.length === 0) firstBytes.push(c);
        chunks.push(c);
      });
      down.pipe(up).pipe(down);
      down.on("error", () => up.destroy());
      up.on("error", () => down.destroy());
      down.on("close", () => up.destroy());
      up.on("close", () => down.destroy());
    });
    await listen(proxy);
    env.closers.push(() => closeServer(proxy));
    const s = await env.pool.connect(env.request({ ip: "127.0.0.1", port: app.port }, { hboneAddress: { ip: "127.0.0.1", port: (proxy.address() as AddressInfo).port } }));
    s.stream.close();
    expect(firstBytes).toHaveLength(1);
    const hello = parseClientHello(firstBytes[0] ?? Buffer.alloc(0));
    expect(hello.alpn).toEqual(["h2"]);
    expect(hello.hasSni).toBe(false);
    expect(hello.versions).toEqual([0x0304]);
  });

  it("CONNECT carries authority, forwarded, traceparent and baggage, no :scheme/:path, and HBONE window settings", async () => {
    env = await newEnv();
    const cert = await certFor(SERVER_ID);
    const seen: IncomingHttpHeaders[] = [];
    let serverSession: ServerHttp2Session | undefined;
    const h2 = createH2Server();
    h2.on("session", (s: ServerHttp2Session) => (serverSession = s));
    h2.on("stream", (stream, headers) => {
      seen.push(headers);
      stream.respond({ ":status": 200 });
      stream.end();
    });
    const tls = createTlsServer(serverTlsOptions(cert), (sock: TLSSocket) => h2.emit("connection", sock));
    await listen(tls as unknown as import("node:net").Server);
    env.closers.push(() => {
      serverSession?.destroy();
      return closeServer(tls as unknown as import("node:net").Server);
    });
    const s = await env.pool.connect(
      env.request(
        { ip: "fd00::1", port: 8080 },
        {
          hboneAddress: { ip: "127.0.0.1", port: (tls.address() as AddressInfo).port },
          client: { ip: "fd00::5", port: 41234 },
          serviceHost: "echo.default.svc.cluster.local",
          traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
          baggage: "k1=v1",
        },
      ),
    );
    s.stream.resume();
    const h = seen[0] ?? {};
    expect(h[":method"]).toBe("CONNECT");
    expect(h[":authority"]).toBe("[fd00::1]:8080");
    expect(h[":scheme"]).toBeUndefined();
    expect(h[":path"]).toBeUndefined();
    expect(h.forwarded).toBe('for="[fd00::5]:41234";host=echo.default.svc.cluster.local');
    expect(h.traceparent).toBe("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    expect(h.baggage).toBe("k1=v1");
    const remote = serverSession?.remoteSettings;
    expect(remote?.initialWindowSize).toBe(STREAM_WINDOW);
    expect(remote?.maxFrameSize).toBe(MAX_FRAME_SIZE);
    expect(remote?.enablePush).toBe(false);
    // The connection-level window is raised with WINDOW_UPDATE right after the preface.
    await waitFor(() => (serverSession?.state.remoteWindowSize ?? 0) >= CONNECTION_WINDOW - 65_535);
  });
});

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}
