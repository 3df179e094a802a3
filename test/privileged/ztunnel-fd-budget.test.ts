import type { Socket } from "node:net";
import { afterAll, expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";
import { waitFor } from "../fixtures/ztunnel-e2e-cluster.js";
import { echoApps, useMesh } from "../fixtures/ztunnel-e2e-suite.js";

// Issue 16 defect 3: one pod holding ~20k connections exhausted ztunnel's descriptors and every
// other pod on both nodes failed, readiness stopped answering, nothing was logged. Here the
// ztunnels run with RLIMIT_NOFILE 1024 (2 workers: 192 connections per worker, a pod's outbound
// share 32 per worker with 2 pods on the node); one pod opens far more than that and holds them.

const APP_PORT = 8080;
const NOFILE = 1024;
const ATTEMPTS = 600;

describePrivileged("ztunnel fd budget", () => {
  // Node 1 has one pod not captured (t.plain): a0's connections to it are passthrough, so only
  // node 0 spends fds.
  const t = useMesh(APP_PORT, { nofile: NOFILE, uncaptured: 1, apps: (m) => echoApps(m, [...m.captured, t.plain], APP_PORT) });
  const held: Socket[] = [];

  afterAll(() => {
    for (const s of held) s.destroy();
  });

  /** Opens a connection from a pod and proves it works end to end; the socket stays open. */
  async function hold(from: PodInfo, to: PodInfo): Promise<Socket | undefined> {
    const s = t.mesh.factory(from.netnsPath).connectTcp({ host: to.ip, port: APP_PORT });
    s.on("error", () => undefined);
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 5_000);
      s.once("connect", () => s.write("x"));
      s.once("data", () => {
        clearTimeout(timer);
        resolve(true);
      });
      s.once("close", () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (ok) return s;
    s.destroy();
    return undefined;
  }

  it("one pod holding connections up to its budget leaves every other pod able to connect and readiness answering, with a warning", async () => {
    let refused = 0;
    for (let i = 0; i < ATTEMPTS; i += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, () => hold(t.a0, t.plain)));
      for (const s of batch) {
        if (s === undefined) refused++;
        else held.push(s);
      }
    }
    // a0 got at most its share on each of node 0's two workers, and was refused beyond it.
    expect(held.length).toBeGreaterThan(0);
    expect(held.length).toBeLessThanOrEqual(2 * 32);
    expect(refused).toBe(ATTEMPTS - held.length);
    // Every other pod, on both nodes, in both directions, still connects.
    for (let i = 0; i < 5; i++) await Promise.all([t.echo(t.a1, t.b0), t.echo(t.b1, t.a1), t.echo(t.a1, t.a0), t.echo(t.b0, t.a1), t.echo(t.a1, t.plain)]);
    // a0's held connections still work.
    const first = held[0]!;
    const back = new Promise<string>((r) => first.once("data", (d: Buffer) => r(d.toString())));
    first.write("still");
    expect(await back).toBe("still");
    // Readiness answers on both nodes.
    expect((await t.mesh.readiness(0)).status).toBe(200);
    expect((await t.mesh.readiness(1)).status).toBe(200);
    // The refusal was logged (throttled) and counted.
    await waitFor(() => t.mesh.logs(0, 2000).includes("connection budget reached"), 5_000, () => `no budget warning:\n${t.mesh.logs(0, 20)}`);
    await waitFor(
      async () => /ztunnel_connections_shed_total\{reason="pod_share"\} [1-9]/.test((await t.mesh.http(0, 15020, "/metrics")).body),
      5_000,
      () => "no shed count in the metrics",
    );
    expect(t.mesh.logs(0, 2000)).toMatch(/"fdLimit":1024/);
  });

  it("the held passthrough connections ran on the kernel relay until the pod's share had no room for its pipes, then on JS; removing the pod cuts them all", async () => {
    // Counted per relay: kernel while a spliced connection's 6 fds fit the share, JS after.
    const metrics = (await t.mesh.http(0, 15020, "/metrics")).body;
    const count = (relay: string, reason: string): number => Number(new RegExp(`^ztunnel_plaintext_relays_total\\{relay="${relay}",reason="${reason}"\\} (\\d+)$`, "m").exec(metrics)?.[1] ?? 0);
    expect(count("kernel", "")).toBeGreaterThan(0);
    expect(count("js", "fd_budget")).toBeGreaterThan(0);
    const open = held.filter((s) => !s.destroyed);
    expect(open.length).toBeGreaterThan(0);
    const closed = Promise.all(open.map((s) => new Promise<void>((r) => s.once("close", () => r()))));
    await t.mesh.unenroll(t.a0);
    await Promise.race([closed, new Promise((_, rej) => setTimeout(() => rej(new Error(`connections still open 5 s after the pod was removed\n${t.mesh.logs(0, 20)}`)), 5_000))]);
  });
});
