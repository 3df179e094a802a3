import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync, readdirSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeFd, createSocket, dupFd } from "../../src/native/sockets.js";
import { DEFAULT_PIPE_SIZE, SpliceRelay, type HandOverOptions, type SpliceEvent } from "../../src/native/splice.js";

// The kernel-side plaintext relay (native/src/splice.c) between real loopback TCP connections:
// client A ⇄ [a | relay | b] ⇄ client B. No privilege needed (loopback of this netns).

let server: Server;
const accepted: Socket[] = [];
const waiters: Array<(s: Socket) => void> = [];

beforeAll(async () => {
  server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => {
    const w = waiters.shift();
    if (w) w(s);
    else accepted.push(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
});

function nextAccepted(): Promise<Socket> {
  const s = accepted.shift();
  if (s) return Promise.resolve(s);
  return new Promise((r) => waiters.push(r));
}

/** A connected pair: the client end and the server end (paused, as a proxy's accepted socket). */
type Pair = { client: Socket; proxySide: Socket };

async function pair(): Promise<Pair> {
  const port = (server.address() as { port: number }).port;
  const client = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  const proxySide = await nextAccepted();
  await new Promise<void>((r) => (client.connecting ? client.once("connect", () => r()) : r()));
  return { client, proxySide };
}

interface Setup {
  clientA: Socket;
  clientB: Socket;
  relay: SpliceRelay;
  events: SpliceEvent[];
  ended: Promise<SpliceEvent>;
}

async function setup(before?: (a: Socket, b: Socket, clientA: Socket) => Promise<void>, opts?: HandOverOptions): Promise<Setup> {
  const A = await pair();
  const B = await pair();
  if (before) await before(A.proxySide, B.proxySide, A.client);
  const events: SpliceEvent[] = [];
  let done!: (e: SpliceEvent) => void;
  const ended = new Promise<SpliceEvent>((r) => (done = r));
  const relay = SpliceRelay.fromSockets(
    A.proxySide,
    B.proxySide,
    (e) => {
      events.push(e);
      if (e.t !== "ended") done(e);
    },
    opts,
  );
  expect(relay).toBeDefined();
  expect(A.proxySide.destroyed).toBe(true);
  return { clientA: A.client, clientB: B.client, relay: relay!, events, ended };
}

/** Everything a socket receives until its peer's FIN. */
function collect(s: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on("data", (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    s.once("end", () => resolve(Buffer.concat(chunks)));
    s.once("error", reject);
  });
}

function errorOf(s: Socket): Promise<NodeJS.ErrnoException> {
  return new Promise((r) => s.once("error", r));
}

function fdOf(s: Socket): number {
  return (s as unknown as { _handle: { fd: number } })._handle.fd;
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

describe("SpliceRelay (kernel-side plaintext relay)", () => {
  it("moves bytes both ways, keeps half-close, counts bytes per direction", async () => {
    const t = await setup();
    const atB = collect(t.clientB);
    const atA = collect(t.clientA);
    t.clientA.end("hello from A"); // A's FIN: B sees end, B → A continues
    expect((await atB).toString()).toBe("hello from A");
    const halfEvent = t.events.find((e) => e.t === "ended");
    expect(halfEvent).toMatchObject({ t: "ended", direction: "aToB" });
    t.clientB.write("reply after A's FIN, ");
    t.clientB.end("then B's FIN");
    expect((await atA).toString()).toBe("reply after A's FIN, then B's FIN");
    const end = await t.ended;
    expect(end).toMatchObject({ t: "complete", counts: { aToB: 12, bToA: 33 } });
    expect(t.relay.closed).toBe(true);
    expect(t.relay.counts()).toEqual({ aToB: 12, bToA: 33 });
    t.clientA.destroy();
    t.clientB.destroy();
  });

  it("delivers the bytes Node had already read before the hand-over, first and in order", async () => {
    const t = await setup(async (a, b, clientA) => {
      clientA.write("early bytes|");
      // Let Node read them into a's buffer (paused: nobody consumes them).
      await new Promise<void>((r) => a.once("readable", () => r()));
      expect(a.readableLength).toBe(12);
      expect(b.readableLength).toBe(0);
    });
    const atB = collect(t.clientB);
    t.clientA.end("late bytes");
    expect((await atB).toString()).toBe("early bytes|late bytes");
    t.clientB.end();
    expect(await t.ended).toMatchObject({ t: "complete", counts: { aToB: 22, bToA: 0 } });
    t.clientA.destroy();
    t.clientB.destroy();
  });

  it("moves 64 MiB with backpressure from a receiver that stops reading, intact", async () => {
    const t = await setup();
    const payload = randomBytes(64 * 1024 * 1024);
    const want = createHash("sha256").update(payload).digest("hex");
    // B stops reading: the relay must wait for writability (kernel buffers and its pipe full),
    // not fail or lose bytes.
    t.clientB.pause();
    const wrote = new Promise<void>((r) => {
      t.clientA.write(payload);
      t.clientA.end(() => r());
    });
    // Wait until the relay has stalled: its count stops moving across several polls.
    let stalled = -1;
    for (let same = 0; same < 5; ) {
      await new Promise((r) => setTimeout(r, 20));
      const now = t.relay.counts().aToB;
      same = now === stalled ? same + 1 : 0;
      stalled = now;
    }
    expect(stalled).toBeGreaterThan(0);
    expect(stalled).toBeLessThan(payload.length);
    expect(t.relay.closed).toBe(false);
    const hash = createHash("sha256");
    let got = 0;
    const received = new Promise<void>((r) => {
      t.clientB.on("data", (c: Buffer) => {
        hash.update(c);
        got += c.length;
      });
      t.clientB.once("end", () => r());
    });
    t.clientB.resume();
    await wrote;
    await received;
    expect(got).toBe(payload.length);
    expect(hash.digest("hex")).toBe(want);
    t.clientB.end();
    expect(await t.ended).toMatchObject({ t: "complete", counts: { aToB: payload.length, bToA: 0 } });
    t.clientA.destroy();
    t.clientB.destroy();
  });

  it("sizes its pipes as asked (a one-page pipe still moves everything, in order), the default otherwise", async () => {
    const small = await setup(undefined, { pipeSize: 4096 });
    expect(small.relay.pipeBytes()).toBe(4096);
    const payload = randomBytes(4 * 1024 * 1024);
    const atB = collect(small.clientB);
    small.clientA.end(payload);
    const got = await atB;
    expect(got.length).toBe(payload.length);
    expect(got.equals(payload)).toBe(true);
    small.clientB.end();
    expect(await small.ended).toMatchObject({ t: "complete", counts: { aToB: payload.length, bToA: 0 } });
    small.clientA.destroy();
    small.clientB.destroy();
    const def = await setup();
    expect(def.relay.pipeBytes()).toBe(DEFAULT_PIPE_SIZE);
    def.relay.close(false);
    def.clientA.destroy();
    def.clientB.destroy();
  });

  it("a peer's reset fails the relay and resets the other peer", async () => {
    const t = await setup();
    const atB = errorOf(t.clientB);
    t.clientA.on("error", () => undefined);
    // Some traffic first, so the relay is mid-stream.
    const first = new Promise((r) => t.clientB.once("data", r));
    t.clientA.write("x");
    await first;
    t.clientA.resetAndDestroy();
    const end = await t.ended;
    expect(end.t).toBe("error");
    if (end.t === "error") {
      expect(end.error.code).toBe("ECONNRESET");
      expect(end.error.message).toMatch(/^splice relay: (socket a|splice from socket): connection reset by peer$/i);
      expect(end.counts.aToB).toBe(1);
    }
    expect((await atB).code).toBe("ECONNRESET");
    expect(t.relay.closed).toBe(true);
  });

  it("close(reset) resets both peers, close() without reset ends both with FIN; no event follows", async () => {
    const r = await setup();
    const ra = errorOf(r.clientA);
    const rb = errorOf(r.clientB);
    r.relay.close(true);
    expect((await ra).code).toBe("ECONNRESET");
    expect((await rb).code).toBe("ECONNRESET");
    const g = await setup();
    const ga = collect(g.clientA);
    const gb = collect(g.clientB);
    g.relay.close(false);
    expect((await ga).length).toBe(0);
    expect((await gb).length).toBe(0);
    g.relay.close(true); // idempotent
    await new Promise((res) => setImmediate(res));
    expect(r.events).toEqual([]);
    expect(g.events).toEqual([]);
    for (const s of [g.clientA, g.clientB]) s.destroy();
  });

  it("leaves sockets it cannot take over untouched, and refuses fds that are not stream sockets", async () => {
    const A = await pair();
    const B = await pair();
    // Bytes queued for writing in Node would be lost by a hand-over.
    B.proxySide.cork();
    B.proxySide.write("queued");
    expect(SpliceRelay.fromSockets(A.proxySide, B.proxySide, () => undefined)).toBeUndefined();
    expect(A.proxySide.destroyed).toBe(false);
    B.proxySide.uncork();
    for (const s of [A.client, A.proxySide, B.client, B.proxySide]) s.destroy();
    const file = openSync("/dev/null", "r");
    const udp = createSocket(null, { family: 4, type: "udp" });
    const tcp = createSocket(null, { family: 4, type: "tcp" });
    try {
      expect(() => SpliceRelay.fromFds(file, tcp, () => undefined)).toThrow(`splice relay: fd ${file}: Socket operation on non-socket`);
      expect(() => SpliceRelay.fromFds(tcp, udp, () => undefined)).toThrow(`splice relay: fd ${udp} is not a stream socket`);
      expect(() => SpliceRelay.fromFds(tcp, tcp, () => undefined)).toThrow(`splice relay: both ends are fd ${tcp}`);
    } finally {
      closeSync(file);
      closeFd(udp);
      closeFd(tcp);
    }
  });

  it("leaks no fds over many relays (each: two dups, two pipes)", async () => {
    const runOne = async (): Promise<void> => {
      const t = await setup();
      const atA = collect(t.clientA);
      const atB = collect(t.clientB);
      t.clientA.end("ping");
      t.clientB.end("pong");
      await Promise.all([atA, atB, t.ended]);
      t.clientA.destroy();
      t.clientB.destroy();
    };
    await runOne(); // warm-up: lazily opened fds (epoll, loop internals) are not leaks
    await new Promise((r) => setTimeout(r, 50));
    const before = openFds();
    for (let i = 0; i < 50; i++) await runOne();
    // Closed sockets release their fds in uv close callbacks: one loop turn later.
    await new Promise((r) => setTimeout(r, 50));
    expect(openFds()).toBe(before);
  });

  /**
   * Two proxied pairs whose accepted ends live on only as dups, relayed by `fn` in a worker that
   * is then terminated; `before` is the fd count with the dups open and the worker not started.
   */
  async function relayInTerminatedWorker(fn: "spliceStart" | "spliceBorrow"): Promise<{ A: Pair; B: Pair; fds: number[]; before: number; resets: Promise<NodeJS.ErrnoException>[] }> {
    const A = await pair();
    const B = await pair();
    // The connections are made here and stay open on this side; the worker relays between dups
    // of the accepted ends (fd numbers are process-wide), so only its teardown can end them.
    const fds = [dupFd(fdOf(A.proxySide)), dupFd(fdOf(B.proxySide))];
    A.proxySide.destroy();
    B.proxySide.destroy();
    await new Promise((r) => setImmediate(r));
    const before = openFds();
    const addon = join(process.cwd(), "native", "build", "Release", "ambient_native.node");
    const code = `
      const { parentPort, workerData } = require("node:worker_threads");
      const addon = require(${JSON.stringify(addon)});
      addon.init((ctx) => new Error(ctx));
      addon.${fn}(workerData[0], workerData[1], new Uint8Array(0), new Uint8Array(0), 0, () => {});
      parentPort.postMessage("relaying");`;
    const w = new Worker(code, { eval: true, workerData: fds });
    await new Promise<void>((resolve, reject) => {
      w.once("message", () => resolve());
      w.once("error", reject);
    });
    const resets = [errorOf(A.client), errorOf(B.client)];
    await w.terminate();
    return { A, B, fds, before, resets };
  }

  it("a worker terminated with a relay running exits, resets both peers, closes the relay's fds and pipes", async () => {
    const { A, B, before, resets } = await relayInTerminatedWorker("spliceStart");
    expect((await resets[0]!).code).toBe("ECONNRESET");
    expect((await resets[1]!).code).toBe("ECONNRESET");
    await new Promise((r) => setTimeout(r, 50));
    // Gone: the relay's two fds (its pipes were never counted) and the two reset clients.
    expect(A.client.destroyed && B.client.destroyed).toBe(true);
    expect(openFds()).toBe(before - 4);
  });

  it("a worker terminated with a borrowing relay running leaves the borrowed fds alone (their owner closes them)", async () => {
    const { A, B, fds, before } = await relayInTerminatedWorker("spliceBorrow");
    await new Promise((r) => setTimeout(r, 50));
    // Neither closed nor armed for reset: the owner's close ends both connections with FIN.
    expect(openFds()).toBe(before);
    const atA = collect(A.client);
    const atB = collect(B.client);
    for (const fd of fds) closeFd(fd);
    expect((await atA).length).toBe(0);
    expect((await atB).length).toBe(0);
    A.client.destroy();
    B.client.destroy();
  });
});
