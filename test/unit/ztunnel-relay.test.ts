import { createServer, type Server, type Socket } from "node:net";
import { pino } from "pino";
import type { Logger } from "../../src/shared/log.js";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { errnoOf, ProxyError, responseFlagOf, statusOf, upstreamConnectError } from "../../src/ztunnel/proxy/errors.js";
import { ConnectionLimiter, guardAcceptErrors, ThrottledLog } from "../../src/ztunnel/proxy/limits.js";
import { proxyPassthrough } from "../../src/ztunnel/proxy/outbound.js";
import { Relay, relay, type RelayResult } from "../../src/ztunnel/proxy/relay.js";
import { closeServer, dial, echoServer, expectEcho, listen, loopbackPair, readAll, useLoopbackServers } from "../fixtures/ztunnel-hbone-env.js";

const MiB = 1024 * 1024;

/** The ends of two loopback connections to relay (aPeer ↔ bPeer); a and b may see resets. */
async function ends(servers: Server[]): Promise<{ a: Socket; aPeer: Socket; bPeer: Socket; b: Socket }> {
  const [a, aPeer] = await loopbackPair(servers);
  const [bPeer, b] = await loopbackPair(servers);
  a.on("error", () => undefined);
  b.on("error", () => undefined);
  return { a, aPeer, bPeer, b };
}

describe("plain TCP relay and passthrough", () => {
  const { servers, factory } = useLoopbackServers();

  it("passthrough copies 8 MiB each way (client half-closes first)", async () => {
    const app = await echoServer(servers);
    const front = createServer({ allowHalfOpen: true }, (s) => {
      void proxyPassthrough(s, factory, { ip: "127.0.0.1", port: (app.address() as { port: number }).port });
    });
    servers.push(front);
    await listen(front);
    await expectEcho((front.address() as { port: number }).port, 8 * MiB, 11);
  });

  it("reports counters and completes when both sides end, server first", async () => {
    const servers2 = servers;
    const [a, aPeer] = await loopbackPair(servers2);
    const [bPeer, b] = await loopbackPair(servers2);
    const done = relay(aPeer, bPeer, { halfCloseTimeoutMs: 5000 });
    const bGot = readAll(b);
    b.end("from b"); // b's side finishes first
    expect((await readAll(a)).toString()).toBe("from b");
    a.end("from a, later");
    expect((await bGot).toString()).toBe("from a, later");
    const r = await done;
    expect(r).toMatchObject({ end: "complete", bytesAtoB: 13, bytesBtoA: 6, error: undefined });
  });

  it("reports the end once to an onDone callback, and done (asked for late) resolves to the same result", async () => {
    const [a, aPeer] = await loopbackPair(servers);
    const [bPeer, b] = await loopbackPair(servers);
    const seen: RelayResult[] = [];
    let signal: (r: RelayResult) => void = () => undefined;
    const called = new Promise<RelayResult>((r) => (signal = r));
    const r = new Relay(aPeer, bPeer, { halfCloseTimeoutMs: 5000 }, (result) => {
      seen.push(result);
      signal(result);
    });
    const bGot = readAll(b);
    a.end("ab");
    expect((await bGot).toString()).toBe("ab");
    b.end("ba");
    expect((await readAll(a)).toString()).toBe("ba");
    const result = await called;
    expect(result).toMatchObject({ end: "complete", bytesAtoB: 2, bytesBtoA: 2, error: undefined });
    expect(await r.done).toBe(result);
    r.abort(); // after the end: nothing more is reported
    expect(seen).toEqual([result]);
  });

  it("cuts a connection whose other half never closes after the half-close timeout", async () => {
    const { a, aPeer, bPeer } = await ends(servers);
    const done = relay(aPeer, bPeer, { halfCloseTimeoutMs: 150 });
    a.end();
    const r = await done;
    expect(r.end).toBe("half-close-timeout");
    expect((r.error as ProxyError).code).toBe("HALF_CLOSE_TIMEOUT");
  });

  it("closes an idle connection", async () => {
    const { a, aPeer, bPeer, b } = await ends(servers);
    const done = relay(aPeer, bPeer, { idleTimeoutMs: 150 });
    const seen = (s: Socket): Promise<string> =>
      new Promise((resolve) => {
        s.once("end", () => resolve("end"));
        s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      });
    const aSaw = seen(a);
    const bSaw = seen(b);
    b.resume();
    a.write("x");
    const t0 = Date.now();
    const r = await done;
    expect(r.end).toBe("idle-timeout");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    // Idle is not an error: both peers get a clean FIN, not a reset.
    expect(await aSaw).toBe("end");
    expect(await bSaw).toBe("end");
  });

  it("passthrough to a closed port resets the client and reports UF", async () => {
    const closed = createServer();
    await listen(closed);
    const port = (closed.address() as { port: number }).port;
    await closeServer(closed);
    let result: Awaited<ReturnType<typeof proxyPassthrough>> | undefined;
    const front = createServer({ allowHalfOpen: true }, (s) => {
      void proxyPassthrough(s, factory, { ip: "127.0.0.1", port }).then((r) => (result = r));
    });
    servers.push(front);
    await listen(front);
    const client = await dial((front.address() as { port: number }).port);
    const outcome = await new Promise<string>((resolve) => {
      client.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? ""));
      client.once("end", () => resolve("end"));
    });
    expect(outcome).toBe("ECONNRESET");
    expect(result?.ok).toBe(false);
    if (result?.ok === false) {
      expect(result.error.code).toBe("UPSTREAM_CONNECT_FAILED");
      expect(result.error.responseFlag).toBe("UF");
      expect(result.error.message).toContain("ECONNREFUSED");
    }
  });
});

describe("proxy error table", () => {
  it("maps codes to HTTP status and response flags", () => {
    expect([statusOf("BAD_REQUEST"), responseFlagOf("BAD_REQUEST")]).toEqual([400, "DPE"]);
    expect([statusOf("AUTHORIZATION_DENIED"), responseFlagOf("AUTHORIZATION_DENIED")]).toEqual([401, "DENY"]);
    expect([statusOf("UPSTREAM_CONNECT_FAILED"), responseFlagOf("UPSTREAM_CONNECT_FAILED")]).toEqual([503, "UF"]);
    expect([statusOf("NO_HEALTHY_UPSTREAM"), responseFlagOf("NO_HEALTHY_UPSTREAM")]).toEqual([503, "UH"]);
    const e = new ProxyError("AUTHORIZATION_DENIED", "no");
    expect([e.status, e.responseFlag, e.code, e.name]).toEqual([401, "DENY", "AUTHORIZATION_DENIED", "ProxyError"]);
  });

  it("finds the errno along the cause chain", () => {
    const inner = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const outer = new Error("wrapped", { cause: new Error("middle", { cause: inner }) });
    expect(errnoOf(outer)).toBe("ECONNREFUSED");
    expect(upstreamConnectError(outer, "10.0.0.1:80").message).toBe("connecting to 10.0.0.1:80 failed: ECONNREFUSED");
    expect(errnoOf(new Error("plain"))).toBeUndefined();
  });
});

describe("limits", () => {
  function capture(): { log: Logger; lines: Array<Record<string, unknown>> } {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        cb();
      },
    });
    return { log: pino<never>({ level: "debug" }, sink), lines };
  }

  it("ConnectionLimiter admits up to max and releases idempotently", () => {
    const l = new ConnectionLimiter(2);
    const r1 = l.tryAcquire();
    const r2 = l.tryAcquire();
    expect(l.tryAcquire()).toBeUndefined();
    r1?.();
    r1?.();
    expect(l.stats).toEqual({ active: 1, rejected: 1, max: 2 });
    expect(l.tryAcquire()).toBeDefined();
    r2?.();
  });

  it("ThrottledLog logs once per interval and counts what it suppressed", async () => {
    const { log, lines } = capture();
    let now = 0;
    const t = new ThrottledLog(log, 1000, () => now);
    expect(t.warn({}, "a")).toBe(true);
    now = 500;
    expect(t.warn({}, "a")).toBe(false);
    expect(t.warn({}, "a")).toBe(false);
    now = 1000;
    expect(t.warn({}, "a")).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => l.suppressed)).toEqual([0, 2]);
  });

  it("EMFILE on accept never crashes and is logged once per interval", async () => {
    const { log, lines } = capture();
    const server = createServer();
    await listen(server);
    guardAcceptErrors(server, new ThrottledLog(log, 60_000), "test listener");
    const emfile = Object.assign(new Error("accept EMFILE"), { code: "EMFILE", syscall: "accept" });
    for (let i = 0; i < 5; i++) server.emit("error", emfile);
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ code: "EMFILE", listener: "test listener" });
    expect(String(lines[0]?.msg)).toContain("out of file descriptors");
    // Still listening and serving.
    const s = await dial((server.address() as { port: number }).port);
    s.destroy();
    await closeServer(server);
  });
});
