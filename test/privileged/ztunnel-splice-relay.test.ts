import { createServer, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import type { ProxyError } from "../../src/ztunnel/proxy/errors.js";
import { proxyPassthrough } from "../../src/ztunnel/proxy/outbound.js";
import { startPlaintextRelay } from "../../src/ztunnel/proxy/plain-relay.js";
import { Relay } from "../../src/ztunnel/proxy/relay.js";
import { SpliceSocketRelay } from "../../src/ztunnel/proxy/splice-relay.js";
import { echoServer, expectEcho, listen, loopbackPair, readAll, useLoopbackServers } from "../fixtures/ztunnel-hbone-env.js";

// The plaintext relay seam with the kernel relay behind it (ZTUNNEL_PLAINTEXT_RELAY=splice):
// the JS relay's contract (test/unit/ztunnel-relay.test.ts) holds for the spliced one, and
// the parked JS sockets still let their owners cut the connection. Loopback only, no root.

const MiB = 1024 * 1024;

function seen(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    s.once("end", () => resolve("end"));
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
    s.resume();
  });
}

describe("plaintext relay through splice", () => {
  const { servers, factory } = useLoopbackServers();

  /** Two loopback connections, the kernel relay between their accepted sides (aPeer ↔ bPeer). */
  async function spliced(opts: Parameters<typeof startPlaintextRelay>[3]) {
    const [a, aPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const [b, bPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    return { a, aPeer, b, bPeer, r: startPlaintextRelay("splice", aPeer, bPeer, opts) };
  }

  it("passthrough copies 8 MiB each way through the kernel relay and reports both counts", async () => {
    const app = await echoServer(servers);
    let result: Awaited<ReturnType<typeof proxyPassthrough>> | undefined;
    const done = new Promise<void>((resolve) => {
      const front = createServer({ allowHalfOpen: true }, (s) => {
        void proxyPassthrough(s, factory, { ip: "127.0.0.1", port: (app.address() as { port: number }).port }, undefined, "splice").then((r) => {
          result = r;
          resolve();
        });
      });
      servers.push(front);
      void listen(front).then(async () => {
        await expectEcho((front.address() as { port: number }).port, 8 * MiB, 11);
      });
    });
    await done;
    expect(result?.ok).toBe(true);
    if (result?.ok) expect(result.result).toMatchObject({ end: "complete", bytesAtoB: 8 * MiB, bytesBtoA: 8 * MiB, error: undefined });
  });

  it("uses the kernel relay when asked, and completes when both sides end, server first", async () => {
    const { a, b, r } = await spliced({ halfCloseTimeoutMs: 5000 });
    expect(r).toBeInstanceOf(SpliceSocketRelay);
    const bGot = readAll(b);
    b.end("from b");
    expect((await readAll(a)).toString()).toBe("from b");
    a.end("from a, later");
    expect((await bGot).toString()).toBe("from a, later");
    expect(await r.done).toMatchObject({ end: "complete", bytesAtoB: 13, bytesBtoA: 6, error: undefined });
  });

  it("falls back to the JS relay for sockets with bytes queued in Node, and for ZTUNNEL_PLAINTEXT_RELAY=js", async () => {
    const [a, aPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const [b, bPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    bPeer.cork();
    bPeer.write("queued before the relay|");
    const r = startPlaintextRelay("splice", aPeer, bPeer, {});
    expect(r).toBeInstanceOf(Relay);
    bPeer.uncork();
    const aGot = readAll(a);
    const bGot = readAll(b);
    b.end("from b");
    a.end("from a");
    expect((await aGot).toString()).toBe("from b");
    expect((await bGot).toString()).toBe("queued before the relay|from a");
    expect((await r.done).end).toBe("complete");
    const [c, cPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const [d, dPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const js = startPlaintextRelay("js", cPeer, dPeer, {});
    expect(js).toBeInstanceOf(Relay);
    c.end();
    d.end();
    await Promise.all([readAll(c), readAll(d)]);
    expect((await js.done).end).toBe("complete");
  });

  it("cuts a connection whose other half never closes after the half-close timeout", async () => {
    const { a, b, r } = await spliced({ halfCloseTimeoutMs: 150 });
    const bSaw: string[] = [];
    b.on("data", () => undefined);
    b.on("end", () => bSaw.push("end"));
    const bClosed = new Promise<NodeJS.ErrnoException | undefined>((res) => {
      b.once("error", (e: NodeJS.ErrnoException) => res(e));
      b.once("close", () => res(undefined));
    });
    a.on("error", () => undefined);
    a.end();
    const result = await r.done;
    expect(result.end).toBe("half-close-timeout");
    expect((result.error as ProxyError).code).toBe("HALF_CLOSE_TIMEOUT");
    // b got a's FIN first, then its connection was cut: b finds out on its next write (after
    // EOF nothing reads the socket).
    expect(bSaw).toEqual(["end"]);
    const probe = setInterval(() => b.write("still here"), 20);
    const err = await bClosed;
    clearInterval(probe);
    expect(["ECONNRESET", "EPIPE"]).toContain(err?.code);
  });

  it("closes an idle connection with a clean FIN both ways", async () => {
    const [a, aPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const [b, bPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const aSaw = seen(a);
    const bSaw = seen(b);
    const r = startPlaintextRelay("splice", aPeer, bPeer, { idleTimeoutMs: 150 });
    a.write("x");
    const t0 = Date.now();
    const result = await r.done;
    expect(result.end).toBe("idle-timeout");
    expect(result.bytesAtoB).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(await aSaw).toBe("end");
    expect(await bSaw).toBe("end");
  });

  it("destroying a parked socket (pod removed, policy revoked) resets both peers and ends the relay", async () => {
    const { a, aPeer, b, bPeer, r } = await spliced({});
    const aSaw = seen(a);
    const bSaw = seen(b);
    const first = new Promise((res) => b.once("data", res));
    a.write("x");
    await first;
    aPeer.resetAndDestroy(); // what the connection tracker's close does
    const result = await r.done;
    expect(result.end).toBe("error");
    expect(result.bytesAtoB).toBe(1);
    expect(await aSaw).toBe("ECONNRESET");
    expect(await bSaw).toBe("ECONNRESET");
    expect(bPeer.destroyed).toBe(true);
  });

  it("abort() resets both peers", async () => {
    const { a, b, r } = await spliced({});
    const aSaw = seen(a);
    const bSaw = seen(b);
    r.abort(new Error("drain deadline"));
    expect((await r.done).end).toBe("aborted");
    expect(await aSaw).toBe("ECONNRESET");
    expect(await bSaw).toBe("ECONNRESET");
  });
});
