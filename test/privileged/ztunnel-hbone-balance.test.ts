import type { Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import { Mesh } from "../fixtures/ztunnel-e2e-cluster.js";
import { nameEchoApps } from "../fixtures/ztunnel-e2e-suite.js";

// Inbound HBONE connections are spread over a node's proxy workers (worker/hbone-balance.ts).
// Each worker listens on the pod's 15008 with SO_REUSEPORT; HBONE clients pool, so a pod sees
// few connections and the kernel's 4-tuple hash puts two of them on the same worker half the
// time. Two client pods open one HBONE connection each to the same destination pod, one after
// the other: the second must be served by the other worker, and both must carry traffic.

const PORT = 8080;

describePrivileged("inbound HBONE connections across workers", () => {
  let mesh: Mesh;
  const open: Socket[] = [];

  beforeAll(async () => {
    mesh = await Mesh.create({ workers: 2 });
    await nameEchoApps(mesh, [PORT]);
    await Promise.all([mesh.startZtunnel(0), mesh.startZtunnel(1)]);
  }, 60_000);

  afterAll(async () => {
    for (const s of open) s.destroy();
    await mesh?.destroy();
  });

  /** A connection from `from` to the destination that stays open once the app answered. */
  async function tunnel(from: ReturnType<Mesh["topo"]["pod"]>, to: string): Promise<string> {
    const s = await mesh.dial(from, to, PORT);
    open.push(s);
    s.on("error", () => undefined);
    return await new Promise<string>((resolve) => {
      let got = "";
      s.on("data", (c: Buffer) => {
        got += c.toString();
        if (got.includes("\n")) resolve(got.trim());
      });
      s.once("close", () => resolve(got.trim()));
    });
  }

  it("two pooled connections into one pod are served by two workers, each relaying", async () => {
    const dst = mesh.topo.pod(1, 0);
    // Sequential: the second connection is accepted after the first was counted.
    expect(await tunnel(mesh.topo.pod(0, 0), dst.ip)).toBe(dst.name);
    expect(await tunnel(mesh.topo.pod(0, 1), dst.ip)).toBe(dst.name);
    const conns = (await mesh.configDump(1)).workloadState[mesh.uid(dst)]?.connections ?? [];
    const hbone = conns.filter((c) => c.listener === "inbound-hbone");
    expect(hbone).toHaveLength(2);
    expect(hbone.map((c) => c.worker).sort()).toEqual([0, 1]);
    // Still relaying both ways after the hand-off: an echo through each tunnel.
    for (const s of open) s.write("ping\n");
    const echoes = await Promise.all(
      open.map((s) => new Promise<string>((resolve) => s.once("data", (c: Buffer) => resolve(c.toString())))),
    );
    expect(echoes).toEqual(["ping\n", "ping\n"]);
  });
});
