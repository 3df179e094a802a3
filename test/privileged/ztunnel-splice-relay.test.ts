import { execFileSync } from "node:child_process";
import { closeSync, openSync, readdirSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import type { ProxyError } from "../../src/ztunnel/proxy/errors.js";
import { proxyPassthrough } from "../../src/ztunnel/proxy/outbound.js";
import { SPLICE_EXTRA_FDS } from "../../src/ztunnel/proxy/budget.js";
import { startPlaintextRelay, unmetered, type JsRelayWhy, type PlaintextRelayChoice, type RelayUsed } from "../../src/ztunnel/proxy/plain-relay.js";
import { readNofile } from "../../src/ztunnel/proxy/rlimit.js";
import { SpliceSocketRelay } from "../../src/ztunnel/proxy/splice-relay.js";
import { echoServer, expectEcho, listen, loopbackPair, readAll, useLoopbackServers } from "../fixtures/ztunnel-hbone-env.js";

// The plaintext relay seam with the kernel relay behind it (ZTUNNEL_PLAINTEXT_RELAY=splice,
// the default): the JS relay's contract (test/unit/ztunnel-relay.test.ts) holds for the spliced
// one, the parked JS sockets still let their owners cut the connection, the pipes are asked of
// the fd budget and every fallback to JS is reported with its reason. Loopback only, no root.

/** A choice that records what the seam reported and hands out `room` extra descriptors. */
function recording(room = Infinity) {
  const used: Array<{ relay: RelayUsed; why?: JsRelayWhy }> = [];
  let held = 0;
  const choice: PlaintextRelayChoice = {
    kind: "splice",
    extraFds: (n) => {
      if (held + n > room) return undefined;
      held += n;
      let released = false;
      return () => {
        if (!released) held -= n;
        released = true;
      };
    },
    pipes: unmetered("splice").pipes,
    used: (relay, why) => used.push(why === undefined ? { relay } : { relay, why }),
  };
  return { choice, used, held: () => held };
}

/**
 * Sends `data` from a's peer side through the relay (a ends, b ends at once without writing):
 * b must get exactly `expected`, and the relay must complete.
 */
async function carriesThrough(a: Socket, b: Socket, r: { done: Promise<{ end: string }> }, data: string | Buffer, expected: string | Buffer = data): Promise<void> {
  const got = readAll(b);
  a.end(data);
  b.end();
  expect((await got).equals(Buffer.from(expected))).toBe(true);
  expect((await r.done).end).toBe("complete");
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

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
    return { a, aPeer, b, bPeer, r: startPlaintextRelay(unmetered("splice"), aPeer, bPeer, opts) };
  }

  it("passthrough copies 8 MiB each way through the kernel relay and reports both counts", async () => {
    const app = await echoServer(servers);
    const rec = recording();
    let result: Awaited<ReturnType<typeof proxyPassthrough>> | undefined;
    const done = new Promise<void>((resolve) => {
      const front = createServer({ allowHalfOpen: true }, (s) => {
        void proxyPassthrough(s, factory, { ip: "127.0.0.1", port: (app.address() as { port: number }).port }, undefined, rec.choice).then((r) => {
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
    if (result?.ok) {
      expect(result.result).toMatchObject({ end: "complete", bytesAtoB: 8 * MiB, bytesBtoA: 8 * MiB, error: undefined });
      // The kernel relay carried it (the JS relay would give the same bytes): the result says
      // so, the seam reported it, and its pipes were taken from the budget and given back.
      expect(result.relay).toBe("kernel");
    }
    expect(rec.used).toEqual([{ relay: "kernel" }]);
    expect(rec.held()).toBe(0);
  });

  it("a spliced connection holds exactly its pipes on top of its two sockets (what the budget counts)", async () => {
    const [a, aPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const [b, bPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const rec = recording();
    const before = openFds();
    const r = startPlaintextRelay(rec.choice, aPeer, bPeer, {});
    expect(r.relay).toBe("kernel");
    expect(openFds() - before).toBe(SPLICE_EXTRA_FDS);
    expect(rec.held()).toBe(SPLICE_EXTRA_FDS);
    await carriesThrough(a, b, r, "x");
    expect(rec.held()).toBe(0);
  });

  it("relays in JS, and says why, when the pod's fd share has no room for the pipes", async () => {
    const [a, aPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const [b, bPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const rec = recording(SPLICE_EXTRA_FDS - 1);
    const r = startPlaintextRelay(rec.choice, aPeer, bPeer, {});
    expect(r.relay).toBe("js");
    expect(rec.used).toEqual([{ relay: "js", why: { reason: "fd_budget" } }]);
    await carriesThrough(a, b, r, "over the JS relay");
  });

  it("takes its pipe size from the pod's pipe pages, gives them back at the end, and relays in JS when none fit", async () => {
    const rec = recording();
    let pipePages = 0;
    const granted: number[] = [];
    const metered = (room: number): PlaintextRelayChoice => ({
      ...rec.choice,
      pipes: () => {
        if (room === 0) return undefined;
        granted.push(16 * 1024);
        pipePages += 8;
        return { size: 16 * 1024, release: () => (pipePages -= 8) };
      },
    });
    const [a, aPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const [b, bPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const r = startPlaintextRelay(metered(1), aPeer, bPeer, {});
    expect(r.relay).toBe("kernel");
    expect(granted).toEqual([16 * 1024]);
    expect(pipePages).toBe(8);
    const payload = Buffer.alloc(2 * MiB, 7);
    await carriesThrough(a, b, r, payload);
    expect(pipePages).toBe(0);
    expect(rec.held()).toBe(0);

    const [c, cPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const [d, dPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const js = startPlaintextRelay(metered(0), cPeer, dPeer, {});
    expect(js.relay).toBe("js");
    expect(rec.used.at(-1)).toEqual({ relay: "js", why: { reason: "pipe_budget" } });
    expect(rec.held()).toBe(0); // the pipes' fds were given back too
    await carriesThrough(c, d, js, "over the JS relay");
  });

  it("relays in JS when the pipes cannot be opened (EMFILE), reports it and leaves the sockets working", async () => {
    const [a, aPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    const [b, bPeer] = await loopbackPair(servers, { pauseOnConnect: true });
    a.write("read by Node before the hand-over|");
    await new Promise<void>((res) => aPeer.once("readable", () => res()));
    const rec = recording();
    const { soft, hard } = readNofile();
    const fillers: number[] = [];
    let r: ReturnType<typeof startPlaintextRelay>;
    // The process's fd table full: a limit just above what is open, then filled up.
    execFileSync("prlimit", ["--pid", String(process.pid), `--nofile=${openFds() + 16}:${hard}`]);
    try {
      try {
        for (;;) fillers.push(openSync("/dev/null", "r"));
      } catch {
        // EMFILE: full.
      }
      r = startPlaintextRelay(rec.choice, aPeer, bPeer, {});
    } finally {
      for (const fd of fillers) closeSync(fd);
      execFileSync("prlimit", ["--pid", String(process.pid), `--nofile=${soft}:${hard}`]);
    }
    expect(r.relay).toBe("js");
    expect(rec.used).toHaveLength(1);
    expect(rec.used[0]).toMatchObject({ relay: "js", why: { reason: "fd_exhausted", code: "EMFILE" } });
    expect(rec.held()).toBe(0);
    // Bytes Node had read before the failed hand-over are not lost.
    await carriesThrough(a, b, r, "then more", "read by Node before the hand-over|then more");
  });

  it("uses the kernel relay when asked, and completes when both sides end, server first", async () => {
    const { a, b, r } = await spliced({ halfCloseTimeoutMs: 5000 });
    expect(r).toBeInstanceOf(SpliceSocketRelay);
    expect(r.relay).toBe("kernel");
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
    const rec = recording();
    const r = startPlaintextRelay(rec.choice, aPeer, bPeer, {});
    expect(r.relay).toBe("js");
    expect(rec.used).toEqual([{ relay: "js", why: { reason: "not_handed_over" } }]);
    expect(rec.held()).toBe(0);
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
    const forced = { ...recording().choice, kind: "js" as const, used: (relay: RelayUsed, why?: JsRelayWhy) => rec.used.push({ relay, ...(why ? { why } : {}) }) };
    const js = startPlaintextRelay(forced, cPeer, dPeer, {});
    expect(js.relay).toBe("js");
    expect(rec.used.at(-1)).toEqual({ relay: "js", why: { reason: "configured" } });
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
    const r = startPlaintextRelay(unmetered("splice"), aPeer, bPeer, { idleTimeoutMs: 150 });
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
