import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { rootLogger } from "../../src/shared/log.js";
import { decodeResponse } from "../../src/zds/codec.js";
import { ZdsClient } from "../../src/zds/client.js";
import { ZdsServer } from "../../src/zds/server.js";
import { clientDatagram, clientStepArb, playServerSteps, serverStepArb, type ClientStep, type ServerStep } from "../fixtures/zds-fuzz-arbs.js";
import { FakeFds, fakeNetnsOps, memoryPair, MemoryListener, RawPeer, RecordingManager, type FakeNetns } from "../fixtures/zds-memory.js";

// Structure-aware fuzzing: valid ZDS messages mutated field by field, sent in every protocol
// state (before hello, before/after SnapshotSent, after a reconnect). Each case must end with
// the process healthy, every request answered exactly once (or the connection closed after an
// error Ack), and no fd left open.

const RUNS = 10_000;

beforeAll(() => {
  rootLogger().level = "silent"; // thousands of deliberate protocol errors
});

async function runClientCase(steps: ClientStep[]): Promise<void> {
  const fds = new FakeFds();
  const manager = new RecordingManager<FakeNetns>();
  const agents: RawPeer[] = [];
  const client = new ZdsClient<FakeNetns>(
    async () => {
      const [c, s] = memoryPair(fds);
      agents.push(new RawPeer(s));
      return c;
    },
    fakeNetnsOps(fds),
    manager,
    { initialBackoffMs: 0, maxBackoffMs: 0, retryIntervalMs: 60_000 },
  );
  client.start();
  const current = async (): Promise<RawPeer> => {
    const deadline = Date.now() + 2000;
    for (;;) {
      const p = agents.at(-1);
      if (p && !p.closed) {
        await p.nth(0); // hello
        return p;
      }
      if (Date.now() > deadline) throw new Error("client did not reconnect");
      await new Promise((r) => setImmediate(r));
    }
  };
  try {
    for (const step of steps) {
      const peer = await current();
      if (step.t === "reconnect") {
        peer.conn.close();
        continue;
      }
      const { req, bytes, fdNs } = clientDatagram(step);
      const before = peer.received.length;
      const fd = fdNs === null ? undefined : fds.alloc(fdNs);
      await peer.send(bytes, fd).catch(() => {});
      if (fd !== undefined) fds.close(fd);
      await peer.until(() => peer.received.length > before || peer.closed, 2000, "an Ack or a close");
      // Exactly one Ack per request; a protocol error is answered before the close.
      if (peer.received.length > before) {
        expect(peer.received.length).toBe(before + 1);
        const ack = decodeResponse(peer.received[before]!.data).error;
        if (ack.startsWith("protocol error")) await peer.waitClosed();
        if (step.mut.m === "none" && req.type !== "keep" && req.type !== "snapshotSent") expect(ack).toBe("");
      } else {
        expect(peer.closed).toBe(true);
      }
    }
  } finally {
    await client.close();
  }
  for (const p of agents) for (const m of p.received) if (m.fd !== undefined) fds.close(m.fd);
  expect(manager.running.size).toBe(0);
  expect(fds.errors).toEqual([]);
  expect(fds.count).toBe(0);
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function runServerCase(steps: ServerStep[]): Promise<void> {
  const fds = new FakeFds();
  const ops = fakeNetnsOps(fds);
  const listener = new MemoryListener(fds);
  const n1 = ops.openByName("n1");
  const server = new ZdsServer(listener, ops, { list: () => [{ uid: "a", info: { name: "a", namespace: "ns", serviceAccount: "sa" }, netns: n1 }, { uid: "b", info: { name: "b", namespace: "ns", serviceAccount: "sa" } }] }, { ackTimeoutMs: 60_000, helloTimeoutMs: 60_000 });
  const { peers, settled } = await playServerSteps(steps, {
    server,
    netnsArg: (ns) => `ns:${ns}`,
    openFd: () => fds.alloc("evil"),
    closeFd: (fd) => fds.close(fd),
    connect: async () => new RawPeer(listener.connect()),
    hangUp: (peer) => peer.conn.close(),
    settle: tick,
  });
  server.close();
  const results = await Promise.all(settled); // every call settles once the server closes
  for (const r of results) if (r !== undefined) expect(r).toBeInstanceOf(Error);
  await tick();
  for (const p of peers) {
    expect(p.closed).toBe(true);
    for (const m of p.received) if (m.fd !== undefined) fds.close(m.fd);
  }
  expect(server.connectedCount).toBe(0);
  n1.close();
  expect(fds.errors).toEqual([]);
  expect(fds.count).toBe(0);
}

describe("ZDS structure-aware fuzz", () => {
  it(`client (ztunnel side): ${RUNS} mutated request sequences`, async () => {
    await fc.assert(fc.asyncProperty(fc.array(clientStepArb, { minLength: 1, maxLength: 8 }), runClientCase), { numRuns: RUNS });
  }, 120_000);

  it(`server (agent side): ${RUNS} mutated hello/ack sequences`, async () => {
    await fc.assert(fc.asyncProperty(fc.array(serverStepArb, { minLength: 1, maxLength: 10 }), runServerCase), { numRuns: RUNS });
  }, 120_000);
});
