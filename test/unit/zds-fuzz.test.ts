import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { rootLogger } from "../../src/shared/log.js";
import { decodeResponse, encodeAck, encodeHello, encodeRequest, type ZdsRequest } from "../../src/zds/codec.js";
import { ZdsClient } from "../../src/zds/client.js";
import { ZdsServer } from "../../src/zds/server.js";
import { FakeFds, fakeNetnsOps, memoryPair, MemoryListener, RawPeer, RecordingManager, type FakeNetns } from "../fixtures/zds-memory.js";

// Structure-aware fuzzing: valid ZDS messages mutated field by field, sent in every protocol
// state (before hello, before/after SnapshotSent, after a reconnect). Each case must end with
// the process healthy, every request answered exactly once (or the connection closed after an
// error Ack), and no fd left open.

const RUNS = 10_000;

beforeAll(() => {
  rootLogger.level = "silent"; // thousands of deliberate protocol errors
});

type Mutation =
  | { m: "none" }
  | { m: "dropFd" }
  | { m: "addFd"; netns: boolean }
  | { m: "emptyUid" }
  | { m: "dropInfo" }
  | { m: "retag"; byte: number }
  | { m: "truncate"; at: number }
  | { m: "flip"; at: number; xor: number }
  | { m: "append"; bytes: Uint8Array }
  | { m: "oversize" }
  | { m: "random"; bytes: Uint8Array };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Mutation>({ m: "none" }) },
  fc.constant<Mutation>({ m: "dropFd" }),
  fc.boolean().map<Mutation>((netns) => ({ m: "addFd", netns })),
  fc.constant<Mutation>({ m: "emptyUid" }),
  fc.constant<Mutation>({ m: "dropInfo" }),
  fc.integer({ min: 0, max: 255 }).map<Mutation>((byte) => ({ m: "retag", byte })),
  fc.nat(40).map<Mutation>((at) => ({ m: "truncate", at })),
  fc.tuple(fc.nat(40), fc.integer({ min: 1, max: 255 })).map<Mutation>(([at, xor]) => ({ m: "flip", at, xor })),
  fc.uint8Array({ minLength: 1, maxLength: 8 }).map<Mutation>((bytes) => ({ m: "append", bytes })),
  fc.constant<Mutation>({ m: "oversize" }),
  fc.uint8Array({ minLength: 1, maxLength: 24 }).map<Mutation>((bytes) => ({ m: "random", bytes })),
);

function mutateBytes(bytes: Uint8Array, mut: Mutation): Uint8Array {
  switch (mut.m) {
    case "retag":
      return bytes.length > 0 ? Uint8Array.from([mut.byte, ...bytes.subarray(1)]) : bytes;
    case "truncate":
      return bytes.subarray(0, Math.min(mut.at, Math.max(0, bytes.length - 1)));
    case "flip": {
      const copy = Uint8Array.from(bytes);
      if (copy.length > 0) copy[mut.at % copy.length]! ^= mut.xor;
      return copy;
    }
    case "append":
      return Uint8Array.from([...bytes, ...mut.bytes]);
    case "oversize":
      return Uint8Array.from([...bytes, 0x7a, 0x84, 0x08, ...new Uint8Array(1028)]); // unknown field 15, 1028 bytes
    case "random":
      return mut.bytes;
    default:
      return bytes;
  }
}

const uidArb = fc.constantFrom("a", "b", "c", "d");
const nsArb = fc.constantFrom("n1", "n2", "n3");
const requestArb: fc.Arbitrary<{ req: ZdsRequest; ns: string }> = fc.oneof(
  fc.tuple(uidArb, nsArb).map(([uid, ns]) => ({ req: { type: "add", uid, info: { name: uid, namespace: "ns", serviceAccount: "sa" } } as ZdsRequest, ns })),
  uidArb.map((uid) => ({ req: { type: "keep", uid } as ZdsRequest, ns: "" })),
  uidArb.map((uid) => ({ req: { type: "del", uid } as ZdsRequest, ns: "" })),
  fc.constant({ req: { type: "snapshotSent" } as ZdsRequest, ns: "" }),
);

type ClientStep = { t: "send"; req: ZdsRequest; ns: string; mut: Mutation } | { t: "reconnect" };
const clientStepArb: fc.Arbitrary<ClientStep> = fc.oneof(
  { weight: 12, arbitrary: fc.tuple(requestArb, mutationArb).map<ClientStep>(([r, mut]) => ({ t: "send", req: r.req, ns: r.ns, mut })) },
  { weight: 1, arbitrary: fc.constant<ClientStep>({ t: "reconnect" }) },
);

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
      let bytes: Uint8Array;
      const req: ZdsRequest = step.mut.m === "emptyUid" && step.req.type !== "snapshotSent" ? { ...step.req, uid: "" } : step.mut.m === "dropInfo" && step.req.type === "add" ? { ...step.req, info: undefined } : step.req;
      bytes = mutateBytes(encodeRequest(req), step.mut);
      if (bytes.length === 0) bytes = Uint8Array.of(0);
      let fdNs: string | undefined | null = req.type === "add" ? step.ns : null; // null = no fd
      if (step.mut.m === "dropFd") fdNs = null;
      if (step.mut.m === "addFd") fdNs = step.mut.netns ? "n9" : undefined;
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

type ServerStep =
  | { t: "hello"; mut: Mutation }
  | { t: "add"; uid: string; ns: string }
  | { t: "del"; uid: string }
  | { t: "respond"; error: string; mut: Mutation; fd: boolean }
  | { t: "reconnect" };
const serverStepArb: fc.Arbitrary<ServerStep> = fc.oneof(
  fc.constant(0).chain(() => mutationArb).map<ServerStep>((mut) => ({ t: "hello", mut })),
  fc.tuple(uidArb, nsArb).map<ServerStep>(([uid, ns]) => ({ t: "add", uid, ns })),
  uidArb.map<ServerStep>((uid) => ({ t: "del", uid })),
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom("", "", "", "boom"), mutationArb, fc.boolean()).map<ServerStep>(([error, mut, fd]) => ({ t: "respond", error, mut, fd: fd && mut.m === "addFd" })) },
  fc.constant<ServerStep>({ t: "reconnect" }),
);

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function runServerCase(steps: ServerStep[]): Promise<void> {
  const fds = new FakeFds();
  const ops = fakeNetnsOps(fds);
  const listener = new MemoryListener(fds);
  const n1 = ops.openByName("n1");
  const server = new ZdsServer(listener, ops, { list: () => [{ uid: "a", info: { name: "a", namespace: "ns", serviceAccount: "sa" }, netns: n1 }, { uid: "b", info: { name: "b", namespace: "ns", serviceAccount: "sa" } }] }, { ackTimeoutMs: 60_000, helloTimeoutMs: 60_000 });
  const peers: RawPeer[] = [new RawPeer(listener.connect())];
  const settled: Promise<unknown>[] = [];
  for (const step of steps) {
    const peer = peers.at(-1)!;
    switch (step.t) {
      case "hello": {
        const b = mutateBytes(encodeHello(), step.mut);
        await peer.send(b.length ? b : Uint8Array.of(8)).catch(() => {});
        break;
      }
      case "add":
        settled.push(server.podAdded(step.uid, { name: step.uid, namespace: "ns", serviceAccount: "sa" }, `ns:${step.ns}`).catch((e: unknown) => e));
        break;
      case "del":
        settled.push(server.podDeleted(step.uid).catch((e: unknown) => e));
        break;
      case "respond": {
        const b = mutateBytes(encodeAck(step.error), step.mut);
        const fd = step.fd ? fds.alloc("evil") : undefined;
        await peer.send(b.length ? b : Uint8Array.of(0x0a), fd).catch(() => {});
        if (fd !== undefined) fds.close(fd);
        break;
      }
      case "reconnect":
        peer.conn.close();
        peers.push(new RawPeer(listener.connect()));
        break;
    }
    await tick();
  }
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
