import { afterEach, describe, expect, it } from "vitest";
import { decodeRequest, encodeAck, type WorkloadInfo } from "../../src/zds/codec.js";
import { ZdsServer, type PodEntry } from "../../src/zds/server.js";
import { FakeFds, fakeNetnsOps, hex, MemoryListener, RawPeer } from "../fixtures/zds-memory.js";

// Our agent-side server against a raw test client that speaks bytes (not our ZdsClient).

const info = (name: string): WorkloadInfo => ({ name, namespace: "ns", serviceAccount: "sa" });
const HELLO = "0801";
const ACK = "0a00";

function setup(pods: PodEntry[] = [], opts: { ackTimeoutMs?: number; helloTimeoutMs?: number; allowedUids?: number[] } = {}) {
  const fds = new FakeFds();
  const ops = fakeNetnsOps(fds);
  const listener = new MemoryListener(fds);
  const inventory = { pods, list: () => inventory.pods };
  const server = new ZdsServer(listener, ops, inventory, opts);
  const events: string[] = [];
  server.on("connected", (e) => events.push(`connected ${e.id}`));
  server.on("disconnected", (e) => events.push(`disconnected ${e.id}: ${e.reason}`));
  server.on("peerRejected", (e) => events.push(`rejected ${e.reason}`));
  server.on("snapshotSent", (e) => events.push(`snapshot ${e.id} added=${e.added} kept=${e.kept} failed=${e.failed}`));
  const peers: RawPeer[] = [];
  const connect = (creds?: { pid: number; uid: number; gid: number }): RawPeer => {
    const p = new RawPeer(listener.connect(creds));
    peers.push(p);
    return p;
  };
  return { fds, ops, listener, inventory, server, events, connect, peers };
}

/** Acks every request the peer receives, closing received fds, recording decoded requests. */
function autoAck(peer: RawPeer, fds: FakeFds, log: string[], reply: (i: number) => string = () => ACK): () => void {
  let seen = 1; // datagram 0 is nothing: we are the client, we only receive requests
  seen = 0;
  let stop = false;
  void (async () => {
    while (!stop && !peer.closed) {
      let m;
      try {
        m = await peer.nth(seen, 10_000);
      } catch {
        return;
      }
      const r = decodeRequest(m.data);
      log.push(`${r.type}${"uid" in r ? " " + r.uid : ""}${m.fd !== undefined ? " +fd:" + fds.identityOf(m.fd) : ""}`);
      if (m.fd !== undefined) fds.close(m.fd);
      await peer.send(reply(seen)).catch(() => {});
      seen++;
    }
  })();
  return () => (stop = true);
}

let cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

/** A ztunnel peer that says hello and acks every request (recorded in `log`); resolves after `requests` of them. */
async function helloAcking(t: ReturnType<typeof setup>, log: string[], requests: number, what: string): Promise<RawPeer> {
  const p = t.connect();
  await p.send(HELLO);
  cleanup.push(autoAck(p, t.fds, log));
  await p.until(() => log.length === requests, 1000, what);
  return p;
}

describe("ZdsServer (agent side)", () => {
  it("waits for hello, then sends the snapshot: Add with fd, Keep without netns, SnapshotSent", async () => {
    const t = setup();
    const a = t.ops.openByName("podA");
    t.inventory.pods = [
      { uid: "a", info: info("a"), netns: a },
      { uid: "b", info: info("b") },
      { uid: "c", info: info("c"), netns: "ns:podC" },
      { uid: "d", info: info("d"), netns: "/nonexistent" },
    ];
    const p = t.connect();
    // The memory transport delivers on microtasks: one macrotask turn runs everything the
    // server would send on its own, so "nothing" here is a real absence.
    await new Promise((r) => setImmediate(r));
    expect(p.received).toHaveLength(0); // nothing before hello
    expect(t.server.connectedCount).toBe(0);
    await p.send(HELLO);
    const log: string[] = [];
    cleanup.push(autoAck(p, t.fds, log));
    await p.until(() => log.length === 5, 2000, "snapshot");
    expect(log).toEqual(["add a +fd:podA", "keep b", "add c +fd:podC", "keep d", "snapshotSent"]);
    expect(hex(p.received[0]!.data).startsWith("0a")).toBe(true);
    expect(hex(p.received[4]!.data)).toBe("1a00");
    expect(t.server.connectedCount).toBe(1);
    await p.until(() => t.events.some((e) => e.startsWith("snapshot")), 1000, "event");
    expect(t.events).toContain("snapshot 1 added=2 kept=2 failed=0");
    // Only the caller's handle stays open: the server closed what it opened by path.
    expect(t.fds.count).toBe(1);
    a.close();
    t.server.close();
    expect(t.fds.count).toBe(0);
    expect(t.fds.errors).toEqual([]);
  });

  it("podAdded without any connection fails with 'no ztunnel connection'", async () => {
    const t = setup();
    const h = t.ops.openByName("x");
    await expect(t.server.podAdded("x", info("x"), h)).rejects.toThrow(/no ztunnel connection/);
    expect((await t.server.podAdded("x", info("x"), h).catch((e: { code: string }) => e.code))).toBe("ERR_ZDS_NO_CONNECTION");
    h.close();
  });

  it("Add and Del after the snapshot; an error Ack rejects podAdded with ztunnel's text", async () => {
    const t = setup();
    const p = t.connect();
    await p.send(HELLO);
    const log: string[] = [];
    cleanup.push(autoAck(p, t.fds, log, (i) => (i === 2 ? hex(encodeAck("bind failed")) : ACK)));
    await p.until(() => log.length === 1, 1000, "snapshot");
    const h = t.ops.openByName("podX");
    await t.server.podAdded("x", info("x"), h);
    await expect(t.server.podAdded("y", info("y"), "ns:podY")).rejects.toThrow(/ztunnel rejected Add of pod y: bind failed/);
    await t.server.podDeleted("x");
    expect(log).toEqual(["snapshotSent", "add x +fd:podX", "add y +fd:podY", "del x"]);
    expect(hex(p.received[3]!.data)).toBe("1203120178");
    h.close();
    t.server.close();
    expect(t.fds.count).toBe(0);
  });

  it("Add goes only to the newest connection, Del to both", async () => {
    const t = setup();
    const log1: string[] = [];
    const p1 = await helloAcking(t, log1, 1, "snapshot 1");
    const log2: string[] = [];
    const p2 = await helloAcking(t, log2, 1, "snapshot 2");
    expect(t.server.connectedCount).toBe(2);
    await t.server.podAdded("n", info("n"), "ns:podN");
    await t.server.podDeleted("n");
    expect(log1).toEqual(["snapshotSent", "del n"]);
    expect(log2).toEqual(["snapshotSent", "add n +fd:podN", "del n"]);
    // When the newest goes away, Adds fall back to the older live connection.
    p2.conn.close();
    await p1.until(() => t.server.connectedCount === 1, 1000, "drop");
    await t.server.podAdded("m", info("m"), "ns:podM");
    expect(log1.at(-1)).toBe("add m +fd:podM");
    t.server.close();
    expect(t.fds.count).toBe(0);
  });

  it("a client that never acks makes podAdded fail within ~the deadline and is dropped", async () => {
    const t = setup([], { ackTimeoutMs: 200 });
    const p = t.connect();
    await p.send(HELLO);
    await p.nth(0); // SnapshotSent, never acked
    await expect(t.server.podAdded("z", info("z"), "ns:z")).rejects.toThrow(/connection closed before|did not acknowledge/);
    await p.waitClosed();
    expect(t.server.connectedCount).toBe(0);
    expect(t.events.some((e) => /disconnected 1: no Ack for SnapshotSent within 200 ms/.test(e))).toBe(true);
    // A fresh connection; the Add itself times out now.
    const q = t.connect();
    await q.send(HELLO);
    await q.nth(0);
    await q.send(ACK);
    const started = Date.now();
    const err = await t.server.podAdded("z", info("z"), "ns:z").catch((e: Error & { code: string }) => e);
    const took = Date.now() - started;
    expect((err as { code: string }).code).toBe("ERR_ZDS_ACK_TIMEOUT");
    expect(String(err)).toMatch(/did not acknowledge Add of pod z within 200 ms; the connection was dropped/);
    expect(took).toBeGreaterThanOrEqual(190);
    await q.waitClosed();
    expect(t.server.connectedCount).toBe(0);
    for (const m of [...p.received, ...q.received]) if (m.fd !== undefined) t.fds.close(m.fd);
    expect(t.fds.count).toBe(0);
    expect(t.fds.errors).toEqual([]);
  });

  it("drops a connection that never says hello", async () => {
    const t = setup([], { helloTimeoutMs: 100 });
    const p = t.connect();
    await p.waitClosed(1000);
    expect(t.events.at(-1)).toMatch(/no ZdsHello within 100 ms/);
  });

  it("a client that disconnects mid-snapshot gets the full snapshot on reconnect", async () => {
    const t = setup();
    t.inventory.pods = [1, 2, 3].map((i) => ({ uid: `p${i}`, info: info(`p${i}`), netns: `ns:pod${i}` }));
    const p = t.connect();
    await p.send(HELLO);
    const first = await p.nth(0);
    await p.send(ACK);
    await p.nth(1);
    expect(first.fd).toBeDefined();
    p.conn.close(); // gone after two of four requests
    for (const m of p.received) if (m.fd !== undefined) t.fds.close(m.fd);
    await p.until(() => t.server.connectedCount === 0, 1000, "drop");
    const log: string[] = [];
    await helloAcking(t, log, 4, "snapshot");
    expect(log).toEqual(["add p1 +fd:pod1", "add p2 +fd:pod2", "add p3 +fd:pod3", "snapshotSent"]);
    t.server.close();
    expect(t.fds.count).toBe(0);
    expect(t.fds.errors).toEqual([]);
  });

  it("refuses a peer whose uid is not allowed (SO_PEERCRED)", async () => {
    const t = setup();
    const p = t.connect({ pid: 77, uid: 1000, gid: 1000 });
    await p.waitClosed();
    expect(t.events).toEqual(["rejected peer uid 1000 (pid 77) is not allowed; allowed uids: 0"]);
    const t2 = setup([], { allowedUids: [1000] });
    const q = t2.connect({ pid: 77, uid: 1000, gid: 1000 });
    await q.send(HELLO);
    await q.nth(0);
    expect(t2.server.connectedCount).toBe(1);
    t2.server.close();
  });

  it("an Add too large for a datagram fails before anything is sent", async () => {
    const t = setup();
    const log: string[] = [];
    await helloAcking(t, log, 1, "snapshot");
    await expect(t.server.podAdded("big", { ...info("x"), name: "n".repeat(1100) }, "ns:big")).rejects.toThrow(/above the ZDS datagram limit of 1024 bytes/);
    expect(t.server.connectedCount).toBe(1);
    t.server.close();
    expect(t.fds.count).toBe(0);
  });

  it("an inventory that fails drops the connection (ztunnel reconnects for a fresh snapshot)", async () => {
    const t = setup();
    let fail = true;
    t.inventory.list = () => {
      if (fail) throw new Error("pod cache not synced");
      return [];
    };
    const p = t.connect();
    await p.send(HELLO);
    await p.waitClosed();
    expect(t.events.at(-1)).toMatch(/snapshot failed: pod cache not synced/);
    fail = false;
    const q = t.connect();
    await q.send(HELLO);
    expect(hex((await q.nth(0)).data)).toBe("1a00");
    t.server.close();
  });

  it("podAdded with an already closed handle fails without touching the connection", async () => {
    const t = setup();
    const p = t.connect();
    await p.send(HELLO);
    await p.nth(0);
    await p.send(ACK);
    await p.until(() => t.events.some((e) => e.startsWith("snapshot")), 1000, "snapshot");
    const h = t.ops.openByName("gone");
    h.close();
    await expect(t.server.podAdded("g", info("g"), h)).rejects.toThrow(/netns handle is already closed/);
    expect(t.server.connectedCount).toBe(1);
    expect(p.received).toHaveLength(1);
    t.server.close();
  });

  it("rejects unknown options with a hint", () => {
    const fds = new FakeFds();
    expect(() => new ZdsServer(new MemoryListener(fds), fakeNetnsOps(fds), { list: () => [] }, { ackTimeout: 5 } as never)).toThrow(/unknown option "ackTimeout"; known options: helloTimeoutMs, ackTimeoutMs, allowedUids/);
  });
});

describe("ZdsServer malformed input from ztunnel", () => {
  const cases: { name: string; afterHello: boolean; send: string; fd?: boolean; reason: RegExp }[] = [
    { name: "random bytes instead of hello", afterHello: false, send: "ffff01", reason: /protocol error: .*ZdsHello/ },
    { name: "hello with version NOT_USED", afterHello: false, send: "0800", reason: /unsupported ZdsHello version 0/ },
    { name: "an ack with nothing pending", afterHello: true, send: ACK, reason: /no request was waiting for an Ack/ },
    { name: "a second hello", afterHello: true, send: HELLO, reason: /protocol error/ },
    { name: "an fd", afterHello: true, send: ACK, fd: true, reason: /ztunnel never sends fds/ },
    { name: "a truncated ack", afterHello: true, send: "0a05", reason: /protocol error/ },
    { name: "an oversize datagram", afterHello: true, send: "00".repeat(1100), reason: /unreadable datagram/ },
  ];
  for (const c of cases) {
    it(`drops the connection on ${c.name} and stays healthy`, async () => {
      const t = setup();
      const p = t.connect();
      if (c.afterHello) {
        await p.send(HELLO);
        await p.nth(0);
        await p.send(ACK); // snapshot done
        await p.until(() => t.events.some((e) => e.startsWith("snapshot")), 1000, "snapshot");
      }
      const fd = c.fd ? t.fds.alloc("evil") : undefined;
      await p.send(c.send, fd);
      if (fd !== undefined) t.fds.close(fd);
      await p.waitClosed();
      expect(t.events.at(-1)).toMatch(c.reason);
      // The server still serves new connections.
      const q = t.connect();
      await q.send(HELLO);
      expect(hex((await q.nth(0)).data)).toBe("1a00");
      t.server.close();
      for (const m of p.received) if (m.fd !== undefined) t.fds.close(m.fd);
      expect(t.fds.count).toBe(0);
      expect(t.fds.errors).toEqual([]);
    });
  }
});
