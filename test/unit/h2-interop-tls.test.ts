import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer as netServer } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { connect as tlsConnect, createServer as createTlsServer, type ConnectionOptions, type Server as TlsServer, type TlsOptions, type TLSSocket } from "node:tls";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { H2Connection } from "../../src/ztunnel/proxy/h2/connection.js";
import { headerObject } from "../../src/ztunnel/proxy/h2/headers.js";
import type { H2Stream } from "../../src/ztunnel/proxy/h2/stream.js";
import { clientTlsOptions, serverTlsOptions } from "../../src/ztunnel/tls/peer.js";
import { formatIdentity } from "../../src/ztunnel/tls/identity.js";
import type { WorkloadCert } from "../../src/ztunnel/tls/ca.js";
import { clientOpts, collect, payload, send, serverOpts, sha } from "../fixtures/h2-peers.js";
import { certFor, id, tempDir, writePem } from "../fixtures/ztunnel-pki.js";

// The lean HTTP/2 layer against independent implementations over real TLS 1.3 + ALPN h2:
// Debian's python3-h2 as HBONE client and server (the HBONE fixtures the node:http2 path is
// tested with), nghttp2's nghttp client and h2load against our server, and nghttpd as the
// server for our client (uploads echoed back with --echo-upload).

const PYTHON = "/usr/bin/python3";
const fixtures = fileURLToPath(new URL("../fixtures/", import.meta.url));
const SERVER_ID = id("server-ns", "server-sa");
const CLIENT_ID = id("client-ns", "client-sa");
const have = (p: string): boolean => existsSync(p);
// Skipped locally without the tools; on CI a missing tool fails the suite instead.
const needs = (ok: boolean): typeof describe.skip => (ok || process.env.CI ? describe : describe.skip);

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function scratch(): Promise<string> {
  const d = await tempDir("h2-interop");
  cleanups.push(d.cleanup);
  return d.path;
}

function spawnTool(cmd: string, args: string[]): { child: ChildProcess; out: () => Buffer; err: () => string; exited: Promise<number | null> } {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  const out: Buffer[] = [];
  let err = "";
  child.stdout?.on("data", (d: Buffer) => out.push(d));
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  cleanups.push(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
    return exited;
  });
  return { child, out: () => Buffer.concat(out), err: () => err, exited };
}

/** Our server on TLS: CONNECT → 200 + echo; POST → 200 + sha256 of the body; GET /big/N → N bytes. */
async function ourTlsServer(tlsOpts: TlsOptions): Promise<number> {
  const tls: TlsServer = createTlsServer(tlsOpts, (sock: TLSSocket) => {
    const conn = new H2Connection(sock, serverOpts());
    conn.on("stream", (s, headers) => handle(s, headerObject(headers)));
    cleanups.push(() => conn.destroy());
  });
  await new Promise<void>((r) => tls.listen(0, "127.0.0.1", () => r()));
  cleanups.push(() => new Promise((r) => tls.close(r)));
  return (tls.address() as { port: number }).port;
}

function handle(s: H2Stream, h: Record<string, string>): void {
  s.on("error", () => undefined);
  if (h[":method"] === "CONNECT") {
    s.respond([[":status", "200"]]);
    s.on("data", (c) => s.write(c));
    s.once("end", () => s.end());
    s.resume();
    return;
  }
  const big = /^\/big\/(\d+)$/.exec(h[":path"] ?? "");
  if (h[":method"] === "GET" && big !== null) {
    s.respond([[":status", "200"], ["content-length", big[1]]]);
    void send(s, payload(Number(big[1]), 7));
    s.resume();
    return;
  }
  void collect(s).then((body) => {
    s.respond([[":status", "200"]]);
    s.end(Buffer.from(sha(body)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = netServer();
    srv.listen(0, "127.0.0.1", () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolve(p));
    });
  });
}

async function ourTlsClient(port: number, tlsExtra: ConnectionOptions): Promise<H2Connection> {
  const sock = tlsConnect({ host: "127.0.0.1", port, ...tlsExtra });
  await new Promise<void>((resolve, reject) => {
    sock.once("secureConnect", () => resolve());
    sock.once("error", reject);
  });
  expect(sock.alpnProtocol).toBe("h2");
  const conn = new H2Connection(sock, clientOpts());
  cleanups.push(() => conn.destroy());
  await new Promise<void>((resolve, reject) => {
    conn.once("remoteSettings", () => resolve());
    conn.once("close", (err) => reject(err ?? new Error("closed before SETTINGS")));
  });
  return conn;
}

function response(s: H2Stream): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    s.once("response", (h) => resolve(headerObject(h)));
    s.once("error", reject);
  });
}

needs(have(PYTHON))("lean HTTP/2 with python3-h2 over mTLS", () => {
  it("python as HBONE client: CONNECT, 1 MiB echoed", async () => {
    const dir = await scratch();
    const port = await ourTlsServer(serverTlsOptions(await certFor(SERVER_ID)));
    const p = await writePem(dir, "client", await certFor(CLIENT_ID));
    const py = spawnTool(PYTHON, [join(fixtures, "ztunnel-h2-client.py"), "--host", "127.0.0.1", "--port", String(port), "--cert", p.cert, "--key", p.key, "--ca", p.ca, "--authority", "10.0.0.9:80", "--bytes", String(1024 * 1024)]);
    expect(await py.exited, py.err()).toBe(0);
    const out = JSON.parse(py.out().toString()) as Record<string, unknown>;
    expect(out).toMatchObject({ status: 200, received: 1024 * 1024, alpn: "h2", tls: "TLSv1.3", reset: null });
    expect(out.sha256).toBe(out.sent_sha256);
  });

  it("python as HBONE server: our client tunnels 1 MiB and sends the CONNECT headers", async () => {
    const dir = await scratch();
    const p = await writePem(dir, "server", await certFor(SERVER_ID));
    const py = spawnTool(PYTHON, [join(fixtures, "ztunnel-h2-server.py"), "--cert", p.cert, "--key", p.key, "--ca", p.ca]);
    const lines = createInterface({ input: py.child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
    const first = await lines.next();
    const { port } = JSON.parse(String(first.value)) as { port: number };
    const conn = await ourTlsClient(port, clientTlsOptions(await certFor(CLIENT_ID), [SERVER_ID]));
    const s = conn.request([[":method", "CONNECT"], [":authority", "10.1.2.3:8080"], ["forwarded", 'for="127.0.0.5:40000"'], ["traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]]);
    expect((await response(s))[":status"]).toBe("200");
    const req = JSON.parse(String((await lines.next()).value)) as { headers: Record<string, string>; peer: string[]; sni: string | null };
    expect(req.headers).toMatchObject({ ":method": "CONNECT", ":authority": "10.1.2.3:8080", forwarded: 'for="127.0.0.5:40000"', traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" });
    expect(req.headers).not.toHaveProperty(":path");
    expect(req.headers).not.toHaveProperty(":scheme");
    expect(req.peer).toEqual([formatIdentity(CLIENT_ID)]);
    expect(req.sni).toBeNull();
    const data = payload(1024 * 1024, 3);
    const got = collect(s);
    await send(s, data);
    expect(sha(await got)).toBe(sha(data));
  });
});

needs(have("/usr/bin/nghttp") && have("/usr/bin/h2load"))("lean HTTP/2 server with nghttp2's clients", () => {
  async function plainTlsServer(): Promise<{ port: number; cert: WorkloadCert }> {
    const cert = await certFor(SERVER_ID);
    // nghttp and h2load present no client certificate and do not verify ours.
    const port = await ourTlsServer({ cert: cert.certPem, key: cert.keyPem, ALPNProtocols: ["h2"], minVersion: "TLSv1.3" });
    return { port, cert };
  }

  it("nghttp uploads 3 MiB and downloads 6 MiB with its default 64 KiB windows", async () => {
    const dir = await scratch();
    const { port } = await plainTlsServer();
    const up = payload(3 * 1024 * 1024, 4);
    await writeFile(join(dir, "up.bin"), up);
    const post = spawnTool("/usr/bin/nghttp", ["-d", join(dir, "up.bin"), `https://127.0.0.1:${port}/upload`]);
    expect(await post.exited, post.err()).toBe(0);
    expect(post.out().toString()).toBe(sha(up));
    const get = spawnTool("/usr/bin/nghttp", [`https://127.0.0.1:${port}/big/6291456`]);
    expect(await get.exited, get.err()).toBe(0);
    expect(sha(get.out())).toBe(sha(payload(6291456, 7)));
  });

  it("h2load: 400 requests, 100 streams at a time over 2 connections, all succeed", async () => {
    const { port } = await plainTlsServer();
    const load = spawnTool("/usr/bin/h2load", ["-n", "400", "-c", "2", "-m", "100", `https://127.0.0.1:${port}/big/1000`]);
    expect(await load.exited, load.err()).toBe(0);
    expect(load.out().toString()).toMatch(/400 succeeded, 0 failed, 0 errored/);
  });
});

needs(have("/usr/sbin/nghttpd"))("lean HTTP/2 client with nghttpd", () => {
  it("GET a 5 MiB file and POST 3 MiB echoed back", async () => {
    const dir = await scratch();
    const cert = await certFor(SERVER_ID);
    const p = await writePem(dir, "server", cert);
    const file = payload(5 * 1024 * 1024, 5);
    await writeFile(join(dir, "file.bin"), file);
    const port = await freePort();
    const d = spawnTool("/usr/sbin/nghttpd", ["--echo-upload", "-d", dir, "--address=127.0.0.1", String(port), p.key, p.cert]);
    // Ready once it accepts a TLS connection.
    let conn: H2Connection | undefined;
    for (let i = 0; i < 100 && conn === undefined; i++) {
      conn = await ourTlsClient(port, { ALPNProtocols: ["h2"], rejectUnauthorized: false }).catch(async () => {
        await new Promise((r) => setTimeout(r, 50));
        return undefined;
      });
    }
    if (conn === undefined) throw new Error(`nghttpd did not come up: ${d.err()}`);
    const base: Array<[string, string]> = [[":scheme", "https"], [":authority", `127.0.0.1:${port}`]];
    const get = conn.request([[":method", "GET"], ...base, [":path", "/file.bin"]]);
    get.end();
    expect((await response(get))[":status"]).toBe("200");
    const gotFile = await collect(get);
    expect(gotFile.length).toBe(file.length);
    expect(sha(gotFile)).toBe(sha(file));
    const post = conn.request([[":method", "POST"], ...base, [":path", "/echo"]]);
    const up = payload(3 * 1024 * 1024, 6);
    const res = response(post);
    const body = collect(post);
    await send(post, up);
    expect((await res)[":status"]).toBe("200");
    const echoed = await body;
    expect(echoed.length).toBe(up.length);
    expect(sha(echoed)).toBe(sha(up));
  });
});
