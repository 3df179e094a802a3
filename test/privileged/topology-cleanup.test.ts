import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import { createNetns, deleteNetns, killAndWait, run, runId } from "../harness/netns.js";
import { describePrivileged } from "../harness/privileged.js";
// A zombie counts as gone: it has released its namespaces; reaping is up to its new parent.
import { isAlive } from "../../src/demo/processes.js";
import { cleanupStale, Topology, TOPOLOGY_PREFIX, TOPOLOGY_STATE_DIR } from "../harness/topology.js";

async function netnsNames(): Promise<string[]> {
  const { stdout } = await run("ip", ["netns", "list"]);
  return stdout
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter(Boolean);
}

/** Everything of a run id still visible: netns, and links in the root netns. */
async function leftovers(id: string): Promise<string[]> {
  const { stdout } = await run("ip", ["-o", "link"]);
  const links = stdout.split("\n").filter((l) => l.includes(id));
  return [...(await netnsNames()).filter((n) => n.includes(id)), ...links];
}

describePrivileged("topology cleanup", () => {
  it("destroy removes every netns and link even while processes run inside, and is idempotent", async () => {
    const topo = await Topology.create({ nodes: 2, podsPerNode: 1, ipv6: true });
    try {
      expect((await leftovers(topo.id)).length).toBeGreaterThan(0);
      const inPod = topo.spawn(topo.pod(0, 0).ns, "sleep", ["1000"]);
      const inNode = topo.spawnNode(topo.nodes[1]!.ns, "-e", ["setInterval(() => {}, 1000)"]);
      // A grandchild the harness never saw: destroy must still find it through the netns.
      const viaShell = topo.spawn(topo.pod(1, 0).ns, "sh", ["-c", "sleep 1000 & echo $!; wait"]);
      const grandchild = await new Promise<number>((resolve) => viaShell.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))));
      expect(isAlive(grandchild)).toBe(true);

      await topo.destroy();

      for (const child of [inPod, inNode, viaShell]) expect(child.exitCode !== null || child.signalCode !== null).toBe(true);
      expect(isAlive(grandchild)).toBe(false);
      expect(await leftovers(topo.id)).toEqual([]);
      expect(existsSync(join(TOPOLOGY_STATE_DIR, `${topo.id}.json`))).toBe(false);
      await topo.destroy(); // second call: no error
      expect(() => topo.spawn(topo.networkNs, "true", [])).toThrow(/destroyed/);
    } finally {
      await topo.destroy();
    }
  });

  it("a creation failure midway removes what was made and leaves netns it did not make alone", async () => {
    const id = runId();
    // Occupy the name of node 1's first pod so creation fails after nodes and pods of node 0 exist.
    const blocker = `${TOPOLOGY_PREFIX}${id}-n1p0`;
    await createNetns(blocker);
    try {
      await expect(Topology.create({ nodes: 2, podsPerNode: 1, id })).rejects.toThrow(/netns add/);
      expect(await leftovers(id)).toEqual([blocker]);
      expect(existsSync(join(TOPOLOGY_STATE_DIR, `${id}.json`))).toBe(false);
    } finally {
      await deleteNetns(blocker);
    }
    expect(await leftovers(id)).toEqual([]);
  });

  it("an id held by a live topology is refused, and the refusal leaves the live one intact", async () => {
    const live = await Topology.create({ nodes: 1, podsPerNode: 1 });
    try {
      await expect(Topology.create({ nodes: 1, podsPerNode: 1, id: live.id })).rejects.toThrow(/already in use by a live process/);
      expect(existsSync(join(TOPOLOGY_STATE_DIR, `${live.id}.json`))).toBe(true);
      await live.ping(live.pod(0, 0).ns, live.nodes[0]!.gateway);
    } finally {
      await live.destroy();
    }
  });

  it("rejects bad specs before creating anything", async () => {
    await expect(Topology.create({ nodes: 0, podsPerNode: 1 })).rejects.toThrow(/nodes must be/);
    await expect(Topology.create({ nodes: 1, podsPerNode: 1, id: "Bad_Id" })).rejects.toThrow(/id "Bad_Id"/);
  });

  it("cleanupStale removes netns of crashed runs only, never live topologies or foreign netns", async () => {
    const live = await Topology.create({ nodes: 1, podsPerNode: 1 });
    const staleId = runId();
    const foreign = `${TOPOLOGY_PREFIX}${runId()}-n0`;
    const staleNs = [`${TOPOLOGY_PREFIX}${staleId}-net`, `${TOPOLOGY_PREFIX}${staleId}-n0`];
    // A crashed run: its owner process is gone (a child that already exited).
    const dead = spawn("true");
    await killAndWait(dead);
    await new Promise((r) => setTimeout(r, 50));
    try {
      await mkdir(TOPOLOGY_STATE_DIR, { recursive: true });
      await writeFile(join(TOPOLOGY_STATE_DIR, `${staleId}.json`), JSON.stringify({ id: staleId, pid: dead.pid, startTime: "1", created: 0 }));
      for (const ns of [...staleNs, foreign]) await createNetns(ns);

      const removed = await cleanupStale();

      expect(removed.filter((n) => n.includes(staleId)).sort()).toEqual([...staleNs].sort());
      const names = await netnsNames();
      for (const ns of staleNs) expect(names).not.toContain(ns);
      expect(names).toContain(foreign);
      expect(names).toContain(live.networkNs);
      expect(existsSync(join(TOPOLOGY_STATE_DIR, `${staleId}.json`))).toBe(false);
      await live.ping(live.pod(0, 0).ns, live.nodes[0]!.gateway);
    } finally {
      for (const ns of [...staleNs, foreign]) await deleteNetns(ns);
      await live.destroy();
    }
  });
});
