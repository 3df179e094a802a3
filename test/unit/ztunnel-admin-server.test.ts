import { connect, type AddressInfo, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { NODE_SERVER_CAPS, startAdminServer, startReadinessServer } from "../../src/ztunnel/admin/server.js";
import { Readiness } from "../../src/ztunnel/readiness.js";
import { captureLogs } from "../fixtures/log-capture.js";

// The node-level HTTP servers: a request target that does not parse is the client's error
// (400, issue 16 item 4), and one peer holding connections cannot lock others out.

function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port });
    let got = "";
    s.on("data", (d: Buffer) => (got += d.toString()));
    s.once("error", reject);
    s.once("close", () => resolve(got));
    s.once("connect", () => s.write(request));
  });
}

function opened(port: number, host = "127.0.0.1"): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

describe("node-level HTTP servers", () => {
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
  });

  it("admin answers 400 (not 500) to a request target that is not a URL, and keeps serving", async () => {
    const { log } = captureLogs();
    const server = await startAdminServer(
      { host: "127.0.0.1", port: 0 },
      { configDump: async () => ({ ok: true }), quit: () => undefined, setLogLevel: (l) => l, currentLogLevel: () => "info", listeners: async () => undefined },
      log,
    );
    servers.push(server);
    const port = (server.address() as AddressInfo).port;
    const bad = await raw(port, "GET http://[::1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(bad).toMatch(/^HTTP\/1\.1 400 /);
    expect(bad).toMatch(/malformed request target/);
    const good = await fetch(`http://127.0.0.1:${port}/config_dump`);
    expect(good.status).toBe(200);
  });

  it("one peer holding its share of connections leaves readiness answering another peer, and the cap is logged", async () => {
    const { log, lines } = captureLogs();
    const readiness = new Readiness();
    const server = await startReadinessServer({ host: "0.0.0.0", port: 0 }, readiness, log);
    servers.push(server);
    const port = (server.address() as AddressInfo).port;
    // One peer (127.0.0.1) takes every slot it may have, and one more.
    for (let i = 0; i < NODE_SERVER_CAPS.perPeer; i++) sockets.push(await opened(port));
    const extra = await opened(port);
    sockets.push(extra);
    await new Promise<void>((r) => extra.once("close", () => r()));
    // The capped peer is closed without an answer while it holds its share...
    expect(await raw(port, "GET /healthz/ready HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")).toBe("");
    // ...and another address (the kubelet's; 127.0.0.2 on loopback) still gets its answer.
    const probe = await new Promise<string>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port, localAddress: "127.0.0.2" });
      let got = "";
      s.on("data", (d: Buffer) => (got += d.toString()));
      s.once("error", reject);
      s.once("close", () => resolve(got));
      s.once("connect", () => s.write("GET /healthz/ready HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"));
    });
    expect(probe).toMatch(/^HTTP\/1\.1 200 /);
    expect(lines().some((l) => l.msg === "connection cap reached; closing new connections" && l.peer === "127.0.0.1")).toBe(true);
  });
});
