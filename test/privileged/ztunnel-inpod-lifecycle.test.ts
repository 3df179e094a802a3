import type { Socket } from "node:net";
import { expect, it } from "vitest";
import { ZdsRejectedError } from "../../src/zds/index.js";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";
import { readN, waitFor } from "../fixtures/ztunnel-e2e-cluster.js";
import { useMesh } from "../fixtures/ztunnel-e2e-suite.js";

// Lifecycle of in-pod proxies in real netns: removal leaves no listener and no netns fd
// behind, a busy port fails the Add and recovers by retry, a crashed worker is replaced,
// a restarted ztunnel gets its pods back from the snapshot, SIGTERM drains until the deadline.

const APP_PORT = 8080;
const DEADLINE_MS = 3_000;

describePrivileged("ztunnel in-pod lifecycle", () => {
  const t = useMesh(APP_PORT, { env: { CONNECTION_TERMINATION_DEADLINE: `${DEADLINE_MS}ms` } });

  async function expectListeners(pod: PodInfo, perPort: number): Promise<void> {
    for (const port of [15001, 15006, 15008]) {
      const lines = await t.mesh.listenersOn(pod, port);
      expect(lines, `${pod.name}:${port}\n${lines.join("\n")}`).toHaveLength(perPort);
    }
  }

  it("a pod removed via ZDS: listeners gone on all workers and no ztunnel fd links to its netns", async () => {
    await t.echo(t.a0, t.b1);
    const inode = await t.mesh.netnsInode(t.b1);
    // The main thread's copy and one dup per worker.
    expect(await t.mesh.fdsLinkingTo(t.pidOf(1), inode)).toHaveLength(3);
    await expectListeners(t.b1, 2);
    await t.mesh.unenroll(t.b1);
    await expectListeners(t.b1, 0);
    expect(await t.mesh.fdsLinkingTo(t.pidOf(1), inode)).toEqual([]);
    const dump = await t.mesh.configDump(1);
    expect(dump.workloadState[t.mesh.uid(t.b1)]).toBeUndefined();
    // Nothing of ztunnel keeps the netns: once the harness deletes it, it is gone.
    t.mesh.forgetNetns(t.b1);
    await t.mesh.topo.removePod(t.b1);
    await t.echo(t.a0, t.b0); // the other pod on that node is untouched
  });

  it("an app holding 15008 fails the Add (error Ack, readiness 500 naming the pod) and retry recovers once it is free", async () => {
    const busy = await t.mesh.addCapturedPod(1, "busy");
    await waitFor(async () => (await t.mesh.configDump(1)).workloads.some((w) => w.uid === t.mesh.uid(busy)), 10_000, () => "state reload not seen");
    const squatter = await t.mesh.factory(busy.netnsPath).listenTcp({ address: "0.0.0.0", port: 15008 });
    const err = await t.mesh.enroll(busy).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ZdsRejectedError);
    expect(String((err as Error).message)).toMatch(/15008|EADDRINUSE|address already in use/i);
    const ready = await t.mesh.readiness(1);
    expect(ready.status).toBe(500);
    expect(ready.body).toContain(t.mesh.uid(busy));
    // Nothing half-bound: the workers that could bind 15001/15006 closed them again.
    expect(await t.mesh.listenersOn(busy, 15001)).toEqual([]);
    expect(await t.mesh.listenersOn(busy, 15006)).toEqual([]);
    await new Promise<void>((r) => squatter.close(() => r()));
    await t.mesh.waitReady(1, 15_000);
    await expectListeners(busy, 2);
    await t.mesh.app(busy, APP_PORT, (s) => s.pipe(s));
    await t.echo(t.a0, busy);
  });

  it("a worker that crashes is replaced, readiness shows it meanwhile, and its pods' listeners come back", async () => {
    const inode = await t.mesh.netnsInode(t.a0);
    const before = (await t.mesh.configDump(0)).workers.find((w) => w.index === 1)!;
    expect((await t.mesh.http(0, 15000, "/debug/workers/1/crash", "POST")).status).toBe(200);
    let sawNotReady = false;
    await waitFor(
      async () => {
        const r = await t.mesh.readiness(0);
        if (r.status === 500 && /worker 1/.test(r.body)) sawNotReady = true;
        if (r.status !== 200) return false;
        const w = (await t.mesh.configDump(0)).workers.find((x) => x.index === 1)!;
        return w.generation > before.generation && w.state === "up";
      },
      15_000,
      () => `worker not replaced\n${t.mesh.logs(0)}`,
    );
    expect(sawNotReady).toBe(true);
    await waitFor(async () => (await t.mesh.listenersOn(t.a0, 15008)).length === 2, 10_000, () => "listeners not back");
    await expectListeners(t.a0, 2);
    // The dead worker's netns copy was closed; the replacement holds exactly one.
    expect(await t.mesh.fdsLinkingTo(t.pidOf(0), inode)).toHaveLength(3);
    const dump = await t.mesh.configDump(0);
    const workersOfA0 = new Set(dump.workloadState[t.mesh.uid(t.a0)]!.listeners.map((l) => l.worker));
    expect(workersOfA0).toEqual(new Set([0, 1]));
    for (let i = 0; i < 6; i++) await t.echo(t.a0, t.b0);
  });

  it("a restarted ztunnel gets its pods back from the ZDS snapshot", async () => {
    const old = t.mesh.node(1).ztunnel!;
    await new Promise<void>((resolve) => {
      old.once("exit", () => resolve());
      old.kill("SIGKILL");
    });
    await t.mesh.startZtunnel(1);
    await expectListeners(t.b0, 2);
    await t.echo(t.a0, t.b0);
    await t.echo(t.b0, t.a0);
  });

  it("SIGTERM: listeners close at once, an open connection keeps working until the deadline, then ztunnel exits", async () => {
    const child = t.mesh.node(0).ztunnel!;
    const long: Socket = await t.mesh.dial(t.a0, t.b0.ip, APP_PORT);
    long.write("before");
    expect((await readN(long, 6)).toString()).toBe("before");
    const exited = new Promise<number>((resolve) => child.once("exit", () => resolve(Date.now())));
    const closed = new Promise<number>((resolve) => long.once("close", () => resolve(Date.now())));
    long.on("error", () => undefined);
    const t0 = Date.now();
    child.kill("SIGTERM");
    await waitFor(async () => (await t.mesh.listenersOn(t.a0, 15001)).length === 0, 2_000, () => "listeners still open after SIGTERM");
    // New connections find no listener (the pod's rules still redirect to 15001).
    await expect(t.mesh.dial(t.a0, t.b0.ip, APP_PORT)).rejects.toThrow(/ECONNREFUSED/);
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
    const child = await t.mesh.startZtunnel(0);
    await t.echo(t.a0, t.b0);
    const exited = new Promise<number>((resolve) => child.once("exit", () => resolve(Date.now())));
    const t0 = Date.now();
    expect((await t.mesh.http(0, 15000, "/quitquitquit", "POST")).status).toBe(200);
    expect((await exited) - t0).toBeLessThan(DEADLINE_MS - 1_000);
    expect(child.exitCode).toBe(0);
    await expectListeners(t.a0, 0);
  });
});
