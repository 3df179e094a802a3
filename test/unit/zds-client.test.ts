import { afterEach, describe, expect, it } from "vitest";
import { Backoff } from "../../src/zds/backoff.js";
import { decodeResponse, encodeRequest, type WorkloadInfo, type ZdsRequest } from "../../src/zds/codec.js";
import { ZdsClient } from "../../src/zds/client.js";
import { FakeFds, fakeNetnsOps, hex, memoryPair, RawPeer, RecordingManager, type FakeNetns } from "../fixtures/zds-memory.js";

// Our ztunnel-side client against a raw test agent that speaks bytes (not our ZdsServer).

const info = (name: string): WorkloadInfo => ({ name, namespace: "ns", serviceAccount: "sa" });

class Agent {
  private next = 1; // datagram 0 is the hello
  constructor(
    readonly peer: RawPeer,
    private readonly fds: FakeFds,
  ) {}

  /** Sends a request (optionally with a fresh fd on netns `ns`) and returns the Ack text. */
  async req(r: ZdsRequest | string, ns?: string): Promise<string> {
    await this.send(r, ns);
    return await this.ack();
  }

  async send(r: ZdsRequest | string, ns?: string): Promise<void> {
    const fd = ns === undefined ? undefined : this.fds.alloc(ns === "<not-netns>" ? undefined : ns);
    await this.peer.send(typeof r === "string" ? r : encodeRequest(r), fd);
    if (fd !== undefined) this.fds.close(fd); // the kernel dup'd it; ours goes
  }

  async ack(): Promise<string> {
    const m = await this.peer.nth(this.next++);
    return decodeResponse(m.data).error;
  }
}

interface Setup {
  fds: FakeFds;
  manager: RecordingManager<FakeNetns>;
  client: ZdsClient<FakeNetns>;
  events: string[];
  waitAgent(n: number): Promise<Agent>;
  refuseNext(n: number): void;
}

function setup(opts: { retryIntervalMs?: number } = {}): Setup {
  const fds = new FakeFds();
  const ops = fakeNetnsOps(fds);
  const manager = new RecordingManager<FakeNetns>();
  const agents: Agent[] = [];
  let refuse = 0;
  const connect = async () => {
    if (refuse > 0) {
      refuse--;
      throw new Error("ECONNREFUSED");
    }
    const [c, s] = memoryPair(fds);
    agents.push(new Agent(new RawPeer(s), fds));
    return c;
  };
  const client = new ZdsClient<FakeNetns>(connect, ops, manager, { retryIntervalMs: opts.retryIntervalMs ?? 100, initialBackoffMs: 1, maxBackoffMs: 20 });
  const events: string[] = [];
  client.on("disconnected", (e) => events.push(`disconnected: ${e.reason}`));
  client.on("protocolError", (e) => events.push(`protocolError: ${e.error}`));
  const waitAgent = async (n: number): Promise<Agent> => {
    const deadline = Date.now() + 2000;
    while (agents.length <= n) {
      if (Date.now() > deadline) throw new Error(`no connection #${n}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    await agents[n]!.peer.nth(0); // its hello
    return agents[n]!;
  };
  const t: Setup = { fds, manager, client, events, waitAgent, refuseNext: (n: number) => void (refuse = n) };
  clients.push(t);
  return t;
}

const clients: Setup[] = [];
afterEach(async () => {
  for (const t of clients.splice(0)) {
    await t.client.close();
    expect(t.fds.count).toBe(0); // every fd ever received was closed
    expect(t.fds.errors).toEqual([]);
  }
});

describe("ZdsClient (ztunnel side)", () => {
  it("says hello (08 01) and answers a snapshot with one Ack per request, in order", async () => {
    const t = setup();
    t.client.start();
    const a = await t.waitAgent(0);
    expect(hex(a.peer.received[0]!.data)).toBe("0801");
    expect(t.client.readiness()).toMatchObject({ ready: false, reason: "no ZDS snapshot received from the node agent yet" });
    // Pipelined: all sent before any ack is read.
    await a.send({ type: "add", uid: "a", info: info("a") }, "podA");
    await a.send({ type: "keep", uid: "k" });
    await a.send({ type: "snapshotSent" });
    expect([await a.ack(), await a.ack(), await a.ack()]).toEqual(["", "", ""]);
    expect(a.peer.received.map((m) => hex(m.data))).toEqual(["0801", "0a00", "0a00", "0a00"]);
    expect(t.manager.calls).toEqual(["start a"]);
    expect(t.client.readiness()).toEqual({ ready: true, reason: "ready", pendingUids: [] });
  });

  it("Add after the snapshot starts, Del after the snapshot drains and closes the netns", async () => {
    const t = setup();
    t.client.start();
    const a = await t.waitAgent(0);
    expect(await a.req({ type: "snapshotSent" })).toBe("");
    expect(await a.req({ type: "add", uid: "x", info: info("x") }, "podX")).toBe("");
    const handle = t.manager.running.get("x")!.netns;
    expect(handle.closed).toBe(false);
    expect(await a.req({ type: "del", uid: "x" })).toBe("");
    expect(handle.closed).toBe(true);
    expect(await a.req({ type: "del", uid: "never-seen" })).toBe(""); // idempotent
    expect(t.manager.calls).toEqual(["start x", "stop x"]);
  });

  it("Add for the same netns is a no-op (the duplicate fd is closed); a different netns replaces", async () => {
    const t = setup();
    t.client.start();
    const a = await t.waitAgent(0);
    await a.req({ type: "snapshotSent" });
    await a.req({ type: "add", uid: "p", info: info("p") }, "podP");
    const fdsAfterFirst = t.fds.count;
    expect(await a.req({ type: "add", uid: "p", info: info("p") }, "podP")).toBe("");
    expect(t.fds.count).toBe(fdsAfterFirst);
    expect(t.manager.calls).toEqual(["start p"]);
    const old = t.manager.running.get("p")!.netns;
    expect(await a.req({ type: "add", uid: "p", info: info("p") }, "podP2")).toBe("");
    expect(t.manager.calls).toEqual(["start p", "stop p", "start p"]);
    expect(old.closed).toBe(true);
    expect(t.manager.running.get("p")!.netns.name).toBe("podP2");
  });

  it("reconnect keeps running proxies; the new snapshot reconciles (unnamed uids stop, Keep and Add retain)", async () => {
    const t = setup();
    t.client.start();
    const a = await t.waitAgent(0);
    for (const u of ["a", "b", "c", "d"]) await a.req({ type: "add", uid: u, info: info(u) }, `pod-${u}`);
    await a.req({ type: "snapshotSent" });
    a.peer.conn.close();
    const b = await t.waitAgent(1);
    expect([...t.manager.running.keys()]).toEqual(["a", "b", "c", "d"]); // survived the reconnect
    expect(await b.req({ type: "add", uid: "a", info: info("a") }, "pod-a")).toBe(""); // same netns: no restart
    expect(await b.req({ type: "keep", uid: "b" })).toBe("");
    expect(await b.req({ type: "add", uid: "d", info: info("d") }, "pod-d")).toBe("");
    expect(await b.req({ type: "del", uid: "d" })).toBe(""); // before SnapshotSent: only forgotten
    expect(t.manager.running.has("d")).toBe(true);
    expect(await b.req({ type: "snapshotSent" })).toBe("");
    expect([...t.manager.running.keys()].sort()).toEqual(["a", "b"]);
    expect(t.manager.calls.slice(4)).toEqual(expect.arrayContaining(["stop c", "stop d"]));
    expect(t.manager.calls.filter((c) => c.startsWith("start"))).toHaveLength(4);
  });

  it("a proxy that fails to start gets an error Ack, is retried every interval, and readiness names it", async () => {
    const t = setup({ retryIntervalMs: 50 });
    t.client.start();
    const a = await t.waitAgent(0);
    t.manager.failStarts.add("f");
    const ack = await a.req({ type: "add", uid: "f", info: info("f") }, "podF");
    expect(ack).toBe("failed to start proxy for pod f: listener for f failed to bind");
    await a.req({ type: "snapshotSent" });
    expect(t.client.readiness()).toEqual({ ready: false, reason: "workload proxies pending: f", pendingUids: ["f"] });
    // Retried: a second start without any new Add.
    await a.peer.until(() => t.manager.calls.filter((c) => c === "start f").length >= 2, 5000, "a retried start");
    t.manager.failStarts.delete("f");
    await a.peer.until(() => t.client.readiness().ready, 1000, "ready");
    expect(t.manager.running.has("f")).toBe(true);
    // A Del cancels retries of a failing proxy too.
    t.manager.failStarts.add("g");
    await a.req({ type: "add", uid: "g", info: info("g") }, "podG");
    expect(await a.req({ type: "del", uid: "g" })).toBe("");
    const starts = t.manager.calls.filter((c) => c === "start g").length;
    await new Promise((r) => setTimeout(r, 120));
    expect(t.manager.calls.filter((c) => c === "start g").length).toBe(starts);
    expect(t.client.readiness().ready).toBe(true);
  });

  it("reconnects with backoff while the agent is not there", async () => {
    const t = setup();
    const failures: number[] = [];
    t.client.on("connectFailed", (e) => failures.push(e.retryInMs));
    t.refuseNext(4);
    t.client.start();
    await t.waitAgent(0);
    expect(failures).toHaveLength(4);
    for (const d of failures) expect(d).toBeLessThanOrEqual(20);
  });
});

describe("Backoff", () => {
  it("doubles from 10 ms to a 15 s cap with jitter in [step/2, step]", () => {
    const lo = new Backoff(10, 15_000, () => 0);
    const hi = new Backoff(10, 15_000, () => 1);
    const los = Array.from({ length: 13 }, () => lo.next());
    const his = Array.from({ length: 13 }, () => hi.next());
    expect(his.slice(0, 4)).toEqual([10, 20, 40, 80]);
    expect(los.slice(0, 4)).toEqual([5, 10, 20, 40]);
    expect(his.at(-1)).toBe(15_000);
    expect(los.at(-1)).toBe(7500);
    hi.reset();
    expect(hi.next()).toBe(10);
  });
});

describe("ZdsClient malformed input from the agent", () => {
  const addX = hex(encodeRequest({ type: "add", uid: "x", info: info("x") }));
  const cases: { name: string; snapshotFirst: boolean; send: string; ns?: string; ack: RegExp; closes: boolean }[] = [
    { name: "random bytes", snapshotFirst: false, send: "ff13ab", ack: /^protocol error: /, closes: true },
    { name: "a truncated datagram", snapshotFirst: false, send: addX.slice(0, 12), ack: /^protocol error: .*truncated|^protocol error: /, closes: true },
    { name: "an oversize datagram", snapshotFirst: false, send: "12" + "00".repeat(1100), ack: /^protocol error: unreadable datagram/, closes: true },
    { name: "an fd on a Del", snapshotFirst: true, send: hex(encodeRequest({ type: "del", uid: "x" })), ns: "podX", ack: /del request carried a file descriptor/, closes: true },
    { name: "an Add without fd", snapshotFirst: true, send: addX, ack: /Add for pod x arrived without a netns file descriptor/, closes: true },
    { name: "an Add without workload_info", snapshotFirst: true, send: "0a030a0178", ns: "podX", ack: /Add for pod x without workload_info/, closes: true },
    { name: "a second SnapshotSent", snapshotFirst: true, send: "1a00", ack: /second SnapshotSent/, closes: true },
    { name: "Keep after the snapshot", snapshotFirst: true, send: hex(encodeRequest({ type: "keep", uid: "k" })), ack: /Keep for pod k after SnapshotSent/, closes: true },
    { name: "a Del without uid", snapshotFirst: true, send: "1200", ack: /del request without a uid/, closes: true },
    { name: "an Add whose fd is not a netns", snapshotFirst: true, send: addX, ns: "<not-netns>", ack: /fd received with Add for pod x is not a network namespace/, closes: false },
  ];
  for (const c of cases) {
    it(`${c.name}: error Ack${c.closes ? ", close and reconnect" : ", connection kept"}; running proxies survive`, async () => {
      const t = setup();
      t.client.start();
      const a = await t.waitAgent(0);
      await a.req({ type: "add", uid: "keepme", info: info("k") }, "podK");
      if (c.snapshotFirst) await a.req({ type: "snapshotSent" });
      const ack = await a.req(c.send, c.ns);
      expect(ack).toMatch(c.ack);
      if (c.closes) {
        await a.peer.waitClosed();
        expect(t.events.some((e) => e.startsWith("protocolError"))).toBe(true);
        const b = await t.waitAgent(1); // reconnected, said hello again
        expect(await b.req({ type: "add", uid: "keepme", info: info("k") }, "podK")).toBe("");
        expect(await b.req({ type: "snapshotSent" })).toBe("");
      } else {
        expect(a.peer.closed).toBe(false);
        expect(await a.req({ type: "del", uid: "x" })).toBe("");
      }
      expect(t.manager.calls.filter((x) => x === "start keepme")).toHaveLength(1);
      expect(t.manager.running.has("keepme")).toBe(true);
    });
  }

  it("an error Ack text is truncated to fit 1024 bytes", async () => {
    const t = setup();
    t.client.start();
    const a = await t.waitAgent(0);
    const long = "u".repeat(900);
    await a.req({ type: "snapshotSent" });
    t.manager.failStarts.add(long);
    const ackText = await a.req({ type: "add", uid: long, info: { name: "n".repeat(40), namespace: "ns", serviceAccount: "sa" } }, "podL");
    expect(ackText).toMatch(/failed to start proxy/);
    expect(a.peer.received.at(-1)!.data.length).toBeLessThanOrEqual(1024);
    expect(ackText.endsWith("...(truncated)")).toBe(true);
  });
});
