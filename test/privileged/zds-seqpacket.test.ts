import { mkdtempSync, rmSync, statSync, writeFileSync, mkdirSync, lstatSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from "vitest";
import { NetnsHandle, SeqpacketServer, SeqpacketSocket, closeFd, sameNetns } from "../../src/native/index.js";
import { rootLogger } from "../../src/shared/log.js";
import { decodeRequest, decodeResponse, encodeRequest, type WorkloadInfo, type ZdsRequest } from "../../src/zds/codec.js";
import { createZdsClient, createZdsServer, type PodEntry, type ZdsServer, type ZdsClient } from "../../src/zds/index.js";
import { createNetns, deleteNetns, runId } from "../harness/netns.js";
import { describePrivileged } from "../harness/privileged.js";
import { waitUntil } from "../harness/wait.js";
import { RecordingManager } from "../fixtures/zds-memory.js";
import { openFdCount, RawSeq } from "../fixtures/zds-raw-seqpacket.js";

// ZDS over real SOCK_SEQPACKET sockets with real pod netns fds (SCM_RIGHTS). Each side is
// tested against a raw peer that speaks bytes on the native socket, not against our other half.

const info = (name: string): WorkloadInfo => ({ name, namespace: "ns", serviceAccount: "sa" });
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

describePrivileged("ZDS over SOCK_SEQPACKET with pod netns fds", () => {
  const id = runId();
  const nsA = `zds${id}a`;
  const nsB = `zds${id}b`;
  let dir: string;
  let pathA: string;
  let pathB: string;
  let idA: { dev: bigint; ino: bigint };
  let idB: { dev: bigint; ino: bigint };
  const toClose: { close(): void | Promise<void> }[] = [];
  let fdBaseline: number | undefined;

  const identityOfFd = (fd: number): { dev: bigint; ino: bigint } => {
    const h = NetnsHandle.fromFd(fd);
    try {
      return h.identity();
    } finally {
      h.close();
    }
  };

  beforeAll(async () => {
    rootLogger().level = "warn";
    dir = mkdtempSync(join(tmpdir(), "zds-"));
    pathA = await createNetns(nsA);
    pathB = await createNetns(nsB);
    const a = NetnsHandle.open(pathA);
    const b = NetnsHandle.open(pathB);
    idA = a.identity();
    idB = b.identity();
    a.close();
    b.close();
    // Load the addon, logger and timers once, so a test's fd count compares like with like.
    const { path } = server("warm", []);
    const r = await rawConnect(path);
    await r.send("0801");
    await r.nth(0);
    for (const c of toClose.splice(0).reverse()) await c.close();
  });

  // Every test, also one run alone, is checked for fd leaks against the count before it.
  beforeEach(() => {
    fdBaseline = openFdCount();
  });

  afterEach(async () => {
    for (const c of toClose.splice(0).reverse()) await c.close();
    const baseline = fdBaseline;
    fdBaseline = undefined;
    expect(baseline, "fd baseline not taken: beforeEach did not run").toBeDefined();
    // Native close callbacks run on the loop: wait until the count settles (or time out).
    await waitUntil(() => openFdCount() === baseline, "the fd count to settle", 2000).catch(() => {});
    expect(openFdCount(), "fds leaked by this test").toBe(baseline);
  });

  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await deleteNetns(nsA);
    await deleteNetns(nsB);
  });

  function sockPath(name: string): string {
    return join(dir, name, "ztunnel", "ztunnel.sock");
  }

  function server(name: string, pods: PodEntry[], opts: { ackTimeoutMs?: number; allowedUids?: number[] } = {}): { server: ZdsServer; path: string } {
    const path = sockPath(name);
    const s = createZdsServer({ list: () => pods }, { socketPath: path, ...opts });
    toClose.push(s);
    return { server: s, path };
  }

  async function rawConnect(path: string): Promise<RawSeq> {
    const sock = await SeqpacketSocket.connect(path, { maxDatagram: 4096 });
    const raw = new RawSeq(sock);
    toClose.push({ close: () => sock.close() });
    return raw;
  }

  it("creates the socket directory 0700, replaces a stale socket, refuses a non-socket file", async () => {
    const path = sockPath("perm");
    mkdirSync(join(dir, "perm", "ztunnel"), { recursive: true, mode: 0o755 });
    const previous = SeqpacketServer.listen(path); // a previous agent's socket file at the path
    const s1 = createZdsServer({ list: () => [] }, { socketPath: path.replace("perm", "perm2") });
    toClose.push(s1);
    expect(statSync(join(dir, "perm2", "ztunnel")).mode & 0o777).toBe(0o700);
    // A socket file already there (a previous agent's) is replaced.
    const s2 = createZdsServer({ list: () => [] }, { socketPath: path });
    toClose.push(s2, { close: () => previous.close() });
    expect(statSync(join(dir, "perm", "ztunnel")).mode & 0o777).toBe(0o700);
    expect(lstatSync(path).isSocket()).toBe(true);
    expect(lstatSync(path).mode & 0o777).toBe(0o600);
    const r = await rawConnect(path);
    await r.send("0801");
    expect(hex((await r.nth(0)).data)).toBe("1a00");
    const notSock = join(dir, "plain", "ztunnel.sock");
    mkdirSync(join(dir, "plain"));
    writeFileSync(notSock, "x");
    expect(() => createZdsServer({ list: () => [] }, { socketPath: notSock })).toThrow(/exists and is not a socket/);
  });

  it("our server vs a raw client: snapshot with a real netns fd and Keep, then Add/Del, Add to newest, Del to all", async () => {
    const handleA = NetnsHandle.open(pathA);
    toClose.push(handleA);
    const { server: s, path } = server("srv", [
      { uid: "a", info: info("a"), netns: handleA },
      { uid: "gone", info: info("gone"), netns: "/proc/999999999/ns/net" },
    ]);
    const r1 = await rawConnect(path);
    await r1.send("0801");
    const add = await r1.nth(0);
    expect(decodeRequest(add.data)).toEqual({ type: "add", uid: "a", info: info("a") });
    expect(add.fd).toBeDefined();
    expect(sameNetns(identityOfFd(add.fd!), idA)).toBe(true);
    await r1.send("0a00");
    const keep = await r1.nth(1);
    expect(hex(keep.data)).toBe(hex(encodeRequest({ type: "keep", uid: "gone" })));
    expect(keep.data[0]).toBe(0x2a);
    expect(keep.fd).toBeUndefined();
    await r1.send("0a00");
    expect(hex((await r1.nth(2)).data)).toBe("1a00");
    await r1.send("0a00");

    // A second connection (ztunnel rolling restart): its own snapshot, then it is the newest.
    const r2 = await rawConnect(path);
    await r2.send("0801");
    for (let i = 0; i < 3; i++) {
      const m = await r2.nth(i);
      if (m.fd !== undefined) closeFd(m.fd);
      await r2.send("0a00");
    }
    await r2.until(() => s.connectedCount === 2, 2000, "two connections");
    const added = s.podAdded("b", info("b"), pathB);
    const mb = await r2.nth(3);
    expect(decodeRequest(mb.data)).toMatchObject({ type: "add", uid: "b" });
    expect(sameNetns(identityOfFd(mb.fd!), idB)).toBe(true);
    await r2.send("0a00");
    await added;
    expect(r1.received).toHaveLength(3); // the older connection got no Add
    const deleted = s.podDeleted("abc");
    const d1 = await r1.nth(3);
    const d2 = await r2.nth(4);
    expect(hex(d1.data)).toBe("12051203616263");
    expect(hex(d2.data)).toBe("12051203616263");
    await r1.send("0a00");
    await r2.send("0a00");
    await deleted;
  });

  it("a client that disconnects mid-snapshot gets the full snapshot on reconnect", async () => {
    const pods: PodEntry[] = [1, 2, 3].map((i) => ({ uid: `p${i}`, info: info(`p${i}`), netns: i === 2 ? pathB : pathA }));
    const { path } = server("midsnap", pods);
    const r1 = await rawConnect(path);
    await r1.send("0801");
    const first = await r1.nth(0);
    closeFd(first.fd!);
    await r1.send("0a00");
    const second = await r1.nth(1);
    closeFd(second.fd!);
    r1.sock.close(); // gone before acking the second Add
    const r2 = await rawConnect(path);
    await r2.send("0801");
    const got: string[] = [];
    for (let i = 0; i < 4; i++) {
      const m = await r2.nth(i);
      const req = decodeRequest(m.data);
      got.push(req.type === "add" ? `add ${req.uid} ${sameNetns(identityOfFd(m.fd!), req.uid === "p2" ? idB : idA)}` : req.type);
      await r2.send("0a00");
    }
    expect(got).toEqual(["add p1 true", "add p2 true", "add p3 true", "snapshotSent"]);
  });

  it("refuses a peer that is not an allowed uid (SO_PEERCRED)", async () => {
    const { path } = server("cred", [], { allowedUids: [4321] });
    const r = await rawConnect(path);
    await r.send("0801").catch(() => {});
    await r.waitClosed();
    expect(r.received).toHaveLength(0);
  });

  it("ack deadline: a client that never acks makes podAdded fail in ~the deadline and is dropped", async () => {
    const { server: s, path } = server("deadline", [], { ackTimeoutMs: 300 });
    const r = await rawConnect(path);
    await r.send("0801");
    await r.nth(0);
    await r.send("0a00");
    await r.until(() => s.connectedCount === 1, 2000, "live");
    const t0 = Date.now();
    const err = (await s.podAdded("x", info("x"), pathA).catch((e: unknown) => e)) as Error & { code: string };
    const took = Date.now() - t0;
    expect(err.code).toBe("ERR_ZDS_ACK_TIMEOUT");
    expect(err.message).toMatch(/did not acknowledge Add of pod x within 300 ms/);
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(1500);
    await r.waitClosed();
    expect(s.connectedCount).toBe(0);
    const m = r.received[1]!;
    if (m.fd !== undefined) closeFd(m.fd);
  });

  function client(path: string, manager: RecordingManager<NetnsHandle>): ZdsClient<NetnsHandle> {
    const c = createZdsClient(manager, { socketPath: path, initialBackoffMs: 5, maxBackoffMs: 50, retryIntervalMs: 100 });
    toClose.push({ close: () => c.close() });
    c.start();
    return c;
  }

  async function rawServer(name: string): Promise<{ path: string; conns: RawSeq[]; next(n: number): Promise<RawSeq> }> {
    const path = sockPath(name);
    mkdirSync(join(dir, name, "ztunnel"), { recursive: true });
    const srv = SeqpacketServer.listen(path, { maxDatagram: 4096 });
    const conns: RawSeq[] = [];
    srv.on("connection", (sock: SeqpacketSocket) => {
      conns.push(new RawSeq(sock));
      toClose.push({ close: () => sock.close() });
    });
    toClose.push({ close: () => srv.close() });
    return {
      path,
      conns,
      async next(n: number): Promise<RawSeq> {
        const deadline = Date.now() + 3000;
        while (conns.length <= n) {
          if (Date.now() > deadline) throw new Error(`no connection #${n}`);
          await new Promise((r) => setTimeout(r, 5));
        }
        const c = conns[n]!;
        expect(hex((await c.nth(0)).data)).toBe("0801");
        return c;
      },
    };
  }

  async function request(c: RawSeq, req: ZdsRequest | string, netnsPathForFd?: string): Promise<string> {
    const before = c.received.length;
    const h = netnsPathForFd === undefined ? undefined : NetnsHandle.open(netnsPathForFd);
    try {
      await c.send(typeof req === "string" ? req : encodeRequest(req), h?.fd);
    } finally {
      h?.close(); // the kernel passed a dup; ours goes now
    }
    return decodeResponse((await c.nth(before)).data).error;
  }

  it("our client vs a raw server: hello, snapshot with fds, idempotent Add, replace on another netns, Keep, reconcile, Del", async () => {
    const rs = await rawServer("cli");
    const manager = new RecordingManager<NetnsHandle>();
    const c = client(rs.path, manager);
    const a = await rs.next(0);
    expect(await request(a, { type: "add", uid: "p", info: info("p") }, pathA)).toBe("");
    expect(hex(a.received[1]!.data)).toBe("0a00");
    expect(sameNetns(manager.running.get("p")!.netns.identity(), idA)).toBe(true);
    expect(await request(a, { type: "add", uid: "q", info: info("q") }, pathA)).toBe("");
    expect(await request(a, { type: "keep", uid: "k" })).toBe("");
    expect(await request(a, { type: "snapshotSent" })).toBe("");
    expect(c.readiness().ready).toBe(true);
    // Same netns again (a new fd): no restart.
    expect(await request(a, { type: "add", uid: "p", info: info("p") }, pathA)).toBe("");
    expect(manager.calls).toEqual(["start p", "start q"]);
    // A different pod netns: the proxy is replaced and runs in B now.
    expect(await request(a, { type: "add", uid: "p", info: info("p") }, pathB)).toBe("");
    expect(manager.calls).toEqual(["start p", "start q", "stop p", "start p"]);
    expect(sameNetns(manager.running.get("p")!.netns.identity(), idB)).toBe(true);
    // Reconnect: proxies survive; the new snapshot names only p, so q is drained.
    a.sock.close();
    const b = await rs.next(1);
    expect(await request(b, { type: "add", uid: "p", info: info("p") }, pathB)).toBe("");
    expect(await request(b, { type: "snapshotSent" })).toBe("");
    expect([...manager.running.keys()]).toEqual(["p"]);
    expect(await request(b, { type: "del", uid: "p" })).toBe("");
    expect(manager.running.size).toBe(0);
    expect(manager.calls.slice(4)).toEqual(["stop q", "stop p"]);
  });

  it("our client vs a raw server: malformed input gets an error Ack, then close and reconnect", async () => {
    const rs = await rawServer("bad");
    const manager = new RecordingManager<NetnsHandle>();
    client(rs.path, manager);
    const cases: { send: string | ZdsRequest; fd?: string; ack: RegExp }[] = [
      { send: "deadbeef", ack: /^protocol error/ },
      { send: { type: "del", uid: "x" }, fd: pathA, ack: /carried a file descriptor/ },
      { send: { type: "add", uid: "x", info: info("x") }, ack: /without a netns file descriptor/ },
      { send: "0a030a0178", fd: pathA, ack: /without workload_info/ },
      { send: "12" + "00".repeat(1500), ack: /unreadable datagram/ }, // above the 1024-byte receive buffer
    ];
    for (let i = 0; i < cases.length; i++) {
      const conn = await rs.next(i);
      const ack = await request(conn, cases[i]!.send, cases[i]!.fd);
      expect(ack).toMatch(cases[i]!.ack);
      await conn.waitClosed();
    }
    // An fd that is not a netns: error Ack, but the connection stays.
    const conn = await rs.next(cases.length);
    const before = conn.received.length;
    const { openSync } = await import("node:fs");
    const devnull = openSync("/dev/null", "r");
    await conn.send(encodeRequest({ type: "add", uid: "n", info: info("n") }), devnull);
    closeFd(devnull);
    expect(decodeResponse((await conn.nth(before)).data).error).toMatch(/not a network namespace/);
    expect(conn.closed).toBe(false);
    expect(await request(conn, { type: "snapshotSent" })).toBe("");
    expect(manager.calls).toEqual([]);
  });

  it("our server and our client together: 50 pods with real fds, then reconnect and reconcile, no fd leak", async () => {
    const pods: PodEntry[] = [];
    const { server: s, path } = server("e2e", pods);
    const manager = new RecordingManager<NetnsHandle>();
    const c = client(path, manager);
    await new Promise<void>((res) => c.once("snapshot", () => res()));
    for (let i = 0; i < 50; i++) {
      await s.podAdded(`pod-${i}`, info(`pod-${i}`), i % 2 ? pathA : pathB);
      pods.push({ uid: `pod-${i}`, info: info(`pod-${i}`), netns: i % 2 ? pathA : pathB });
    }
    expect(manager.running.size).toBe(50);
    for (let i = 0; i < 25; i++) {
      await s.podDeleted(`pod-${i}`);
      pods.shift();
    }
    expect(manager.running.size).toBe(25);
    // The agent forgets 5 more while ztunnel is away: the next snapshot reconciles them.
    pods.splice(0, 5);
    const snap = new Promise<void>((res) => c.once("snapshot", () => res()));
    for (const conn of (s as unknown as { conns: { close(r: string): void }[] }).conns) conn.close("test: drop");
    await snap;
    expect(manager.running.size).toBe(20);
    expect(c.readiness().ready).toBe(true);
  });
});
