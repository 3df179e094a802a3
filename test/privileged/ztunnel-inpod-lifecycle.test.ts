import type { Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ZdsRejectedError } from "../../src/zds/index.js";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";
import { Mesh, readAll, readN, waitFor } from "../fixtures/ztunnel-e2e-cluster.js";

// Lifecycle of in-pod proxies in real netns: removal leaves no listener and no netns fd
// behind, a busy port fails the Add and recovers by retry, a crashed worker is replaced,
// a restarted ztunnel gets its pods back from the snapshot, SIGTERM drains until the deadline.

const APP_PORT = 8080;
const DEADLINE_MS = 3_000;

describePrivileged("ztunnel in-pod lifecycle", () => {
  let mesh: Mesh;
  let a0: PodInfo;
  let b0: PodInfo;
  let b1: PodInfo;

  beforeAll(async () => {
    mesh = await Mesh.create({ env: { CONNECTION_TERMINATION_DEADLINE: `${DEADLINE_MS}ms` } });
    a0 = mesh.topo.pod(0, 0);
    b0 = mesh.topo.pod(1, 0);
    b1 = mesh.topo.pod(1, 1);
    for (const pod of mesh.captured) await mesh.app(pod, APP_PORT, (s) => s.pipe(s));
    await Promise.all([mesh.startZtunnel(0), mesh.startZtunnel(1)]);
  });

  afterAll(async () => {
    await mesh?.destroy();
  });

  async function roundTrip(from: PodInfo, to: PodInfo): Promise<void> {
    const c = await mesh.dial(from, to.ip, APP_PORT);
    const got = readAll(c);
    c.end("ping");
    expect((await got).toString()).toBe("ping");
  }

  function pidOf(node: number): number {
    const pid = mesh.node(node).ztunnel?.pid;
    if (pid === undefined) throw new Error(`no ztunnel on node ${node}`);
    return pid;
  }

  async function expectListeners(pod: PodInfo, perPort: number): Promise<void> {
    for (const port of [15001, 15006, 15008]) {
      const lines = await mesh.listenersOn(pod, port);
      expect(lines, `${pod.name}:${port}\n${lines.join("\n")}`).toHaveLength(perPort);
    }
  }

  it("a pod removed via ZDS: listeners gone on all workers and no ztunnel fd links to its netns", async () => {
    await roundTrip(a0, b1);
    const inode = await mesh.netnsInode(b1);
    // The main thread's copy and one dup per worker.
    expect(await mesh.fdsLinkingTo(pidOf(1), inode)).toHaveLength(3);
    await expectListeners(b1, 2);
    await mesh.unenroll(b1);
    await expectListeners(b1, 0);
    expect(await mesh.fdsLinkingTo(pidOf(1), inode)).toEqual([]);
    const dump = await mesh.configDump(1);
    expect(dump.workloadState[mesh.uid(b1)]).toBeUndefined();
    // Nothing of ztunnel keeps the netns: once the harness deletes it, it is gone.
    mesh.forgetNetns(b1);
    await mesh.topo.removePod(b1);
    await roundTrip(a0, b0); // the other pod on that node is untouched
  });

  it("an app holding 15008 fails the Add (error Ack, readiness 500 naming the pod) and retry recovers once it is free", async () => {
    const busy = await mesh.addCapturedPod(1, "busy");
    await waitFor(async () => (await mesh.configDump(1)).workloads.some((w) => w.uid === mesh.uid(busy)), 10_000, () => "state reload not seen");
    const squatter = await mesh.factory(busy.netnsPath).listenTcp({ address: "0.0.0.0", port: 15008 });
    const err = await mesh.enroll(busy).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ZdsRejectedError);
    expect(String((err as Error).message)).toMatch(/15008|EADDRINUSE|address already in use/i);
    const ready = await mesh.readiness(1);
    expect(ready.status).toBe(500);
    expect(ready.body).toContain(mesh.uid(busy));
    // Nothing half-bound: the workers that could bind 15001/15006 closed them again.
    expect(await mesh.listenersOn(busy, 15001)).toEqual([]);
    expect(await mesh.listenersOn(busy, 15006)).toEqual([]);
    await new Promise<void>((r) => squatter.close(() => r()));
    await mesh.waitReady(1, 15_000);
    await expectListeners(busy, 2);
    await mesh.app(busy, APP_PORT, (s) => s.pipe(s));
    await roundTrip(a0, busy);
  });

  it("a worker that crashes is replaced, readiness shows it meanwhile, and its pods' listeners come back", async () => {
    const inode = await mesh.netnsInode(a0);
    const before = (await mesh.configDump(0)).workers.find((w) => w.index === 1)!;
    expect((await mesh.http(0, 15000, "/debug/workers/1/crash", "POST")).status).toBe(200);
    let sawNotReady = false;
    await waitFor(
      async () => {
        const r = await mesh.readiness(0);
        if (r.status === 500 && /worker 1/.test(r.body)) sawNotReady = true;
        if (r.status !== 200) return false;
        const w = (await mesh.configDump(0)).workers.find((x) => x.index === 1)!;
        return w.generation > before.generation && w.state === "up";
      },
      15_000,
      () => `worker not replaced\n${mesh.logs(0)}`,
    );
    expect(sawNotReady).toBe(true);
    await waitFor(async () => (await mesh.listenersOn(a0, 15008)).length === 2, 10_000, () => "listeners not back");
    await expectListeners(a0, 2);
    // The dead worker's netns copy was closed; the replacement holds exactly one.
    expect(await mesh.fdsLinkingTo(pidOf(0), inode)).toHaveLength(3);
    const dump = await mesh.configDump(0);
    const workersOfA0 = new Set(dump.workloadState[mesh.uid(a0)]!.listeners.map((l) => l.worker));
    expect(workersOfA0).toEqual(new Set([0, 1]));
    for (let i = 0; i < 6; i++) await roundTrip(a0, b0);
  });

  it("a restarted ztunnel gets its pods back from the ZDS snapshot", async () => {
    const old = mesh.node(1).ztunnel!;
    await new Promise<void>((resolve) => {
      old.once("exit", () => resolve());
      old.kill("SIGKILL");
    });
    await mesh.startZtunnel(1);
    await expectListeners(b0, 2);
    await roundTrip(a0, b0);
    await roundTrip(b0, a0);
  });

  it("SIGTERM: listeners close at once, an open connection keeps working until the deadline, then ztunnel exits", async () => {
    const child = mesh.node(0).ztunnel!;
    const long: Socket = await mesh.dial(a0, b0.ip, APP_PORT);
    long.write("before");
    expect((await readN(long, 6)).toString()).toBe("before");
    const exited = new Promise<number>((resolve) => child.once("exit", () => resolve(Date.now())));
    const closed = new Promise<number>((resolve) => long.once("close", () => resolve(Date.now())));
    long.on("error", () => undefined);
    const t0 = Date.now();
    child.kill("SIGTERM");
    await waitFor(async () => (await mesh.listenersOn(a0, 15001)).length === 0, 2_000, () => "listeners still open after SIGTERM");
    // New connections find no listener (the pod's rules still redirect to 15001).
    await expect(mesh.dial(a0, b0.ip, APP_PORT)).rejects.toThrow(/ECONNREFUSED/);
    // Draining: the established connection still carries data both ways.
    long.write("during");
    expect((await readN(long, 6)).toString()).toBe("during");
    const exitAt = await exited;
    const closedAt = await closed;
    expect(exitAt - t0).toBeGreaterThanOrEqual(DEADLINE_MS - 500);
    expect(exitAt - t0).toBeLessThan(DEADLINE_MS + 3_000);
    expect(closedAt - t0).toBeLessThan(DEADLINE_MS + 3_000);
    expect(child.exitCode).toBe(0);
  });

  it("POST /quitquitquit with no open connection exits at once (the deadline is only a bound)", async () => {
    const child = await mesh.startZtunnel(0);
    await roundTrip(a0, b0);
    const exited = new Promise<number>((resolve) => child.once("exit", () => resolve(Date.now())));
    const t0 = Date.now();
    expect((await mesh.http(0, 15000, "/quitquitquit", "POST")).status).toBe(200);
    expect((await exited) - t0).toBeLessThan(DEADLINE_MS - 1_000);
    expect(child.exitCode).toBe(0);
    await expectListeners(a0, 0);
  });
});
