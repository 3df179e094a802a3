import type { Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";
import { Mesh, readAll, waitFor, writeAll } from "../fixtures/ztunnel-e2e-cluster.js";

// Issue 16 defect 3: one pod holding ~20k connections exhausted ztunnel's descriptors and every
// other pod on both nodes failed, readiness stopped answering, nothing was logged. Here the
// ztunnels run with RLIMIT_NOFILE 1024 (2 workers: 192 connections per worker, a pod's outbound
// share 32 per worker with 2 pods on the node); one pod opens far more than that and holds them.

const APP_PORT = 8080;
const NOFILE = 1024;
const ATTEMPTS = 600;

describePrivileged("ztunnel fd budget", () => {
  let mesh: Mesh;
  let a0: PodInfo;
  let a1: PodInfo;
  let b0: PodInfo;
  let b1: PodInfo;
  /** Node 1, not captured: a0's connections to it are passthrough, so only node 0 spends fds. */
  let plain: PodInfo;
  const held: Socket[] = [];

  beforeAll(async () => {
    mesh = await Mesh.create({ nofile: NOFILE, uncaptured: 1 });
    a0 = mesh.topo.pod(0, 0);
    a1 = mesh.topo.pod(0, 1);
    b0 = mesh.topo.pod(1, 0);
    b1 = mesh.topo.pod(1, 1);
    plain = mesh.uncaptured[0]!;
    for (const pod of [...mesh.captured, plain]) await mesh.app(pod, APP_PORT, (s) => s.pipe(s));
    await Promise.all([mesh.startZtunnel(0), mesh.startZtunnel(1)]);
  });

  afterAll(async () => {
    for (const s of held) s.destroy();
    await mesh?.destroy();
  });

  /** Opens a connection from a pod and proves it works end to end; the socket stays open. */
  async function hold(from: PodInfo, to: PodInfo): Promise<Socket | undefined> {
    const s = mesh.factory(from.netnsPath).connectTcp({ host: to.ip, port: APP_PORT });
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

  async function echo(from: PodInfo, to: PodInfo): Promise<void> {
    const c = await mesh.dial(from, to.ip, APP_PORT);
    const got = readAll(c);
    await writeAll(c, Buffer.from(`ping ${from.name}`));
    c.end();
    expect((await got).toString()).toBe(`ping ${from.name}`);
  }

  it("one pod holding connections up to its budget leaves every other pod able to connect and readiness answering, with a warning", async () => {
    let refused = 0;
    for (let i = 0; i < ATTEMPTS; i += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, () => hold(a0, plain)));
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
    for (let i = 0; i < 5; i++) await Promise.all([echo(a1, b0), echo(b1, a1), echo(a1, a0), echo(b0, a1), echo(a1, plain)]);
    // a0's held connections still work.
    const first = held[0]!;
    const back = new Promise<string>((r) => first.once("data", (d: Buffer) => r(d.toString())));
    first.write("still");
    expect(await back).toBe("still");
    // Readiness answers on both nodes.
    expect((await mesh.readiness(0)).status).toBe(200);
    expect((await mesh.readiness(1)).status).toBe(200);
    // The refusal was logged (throttled) and counted.
    await waitFor(() => mesh.logs(0, 2000).includes("connection budget reached"), 5_000, () => `no budget warning:\n${mesh.logs(0, 20)}`);
    await waitFor(
      async () => /ztunnel_connections_shed_total\{reason="pod_share"\} [1-9]/.test((await mesh.http(0, 15020, "/metrics")).body),
      5_000,
      () => "no shed count in the metrics",
    );
    expect(mesh.logs(0, 2000)).toMatch(/"fdLimit":1024/);
  });
});
