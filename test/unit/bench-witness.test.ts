import { describe, expect, it } from "vitest";
import { cpuSeconds } from "../../bench/lib/cpu.js";
import { witness } from "../../bench/lib/witness.js";
import type { ConfigDump } from "../../test/fixtures/ztunnel-e2e-cluster.js";

// The "went through ztunnel" check against a config_dump whose counter moves when we say so
// (as a worker's once-a-second flush would), and the CPU sampler on this very process.

function fakeMesh(): { mesh: { configDump: (node: number) => Promise<ConfigDump> }; set: (n: number) => void; reads: () => number } {
  let opened = 5;
  let reads = 0;
  const mesh = {
    configDump: async (node: number): Promise<ConfigDump> => {
      expect(node).toBe(1);
      reads++;
      return { counters: { inbound: { opened, closed: 0, failed: 0, bytesSent: 0, bytesReceived: 0 }, outbound: { opened: 0, closed: 0, failed: 0, bytesSent: 0, bytesReceived: 0 } } } as unknown as ConfigDump;
    },
  };
  return { mesh, set: (n) => (opened = n), reads: () => reads };
}

describe("bench witness", () => {
  it("waits for a counter that moves only after the run (late flush) instead of failing at once", async () => {
    const f = fakeMesh();
    const check = await witness(f.mesh, { node: 1, direction: "inbound" }, 10_000);
    const done = check();
    // The first poll after the run still sees 5; the flush lands later.
    await new Promise((r) => setTimeout(r, 300));
    expect(f.reads()).toBeGreaterThanOrEqual(2);
    f.set(6);
    await expect(done).resolves.toBeUndefined();
  });

  it("fails with the node, direction and counter when nothing was counted within the wait", async () => {
    const f = fakeMesh();
    const check = await witness(f.mesh, { node: 1, direction: "inbound" }, 250);
    await expect(check()).rejects.toThrow("traffic did not go through ztunnel: node 1's inbound connection counter stayed at 5");
  });

  it("a path not through ztunnel needs no check", async () => {
    const f = fakeMesh();
    await (await witness(f.mesh, undefined))();
    expect(f.reads()).toBe(0);
  });
});

describe("bench CPU sampler", () => {
  it("reads user and system seconds of a live process, and they only grow", async () => {
    const a = await cpuSeconds([process.pid]);
    let x = 0;
    for (let i = 0; i < 5e6; i++) x += i;
    expect(x).toBeGreaterThan(0);
    const b = await cpuSeconds([process.pid]);
    expect(a.user).toBeGreaterThan(0);
    expect(b.user + b.system).toBeGreaterThanOrEqual(a.user + a.system);
    await expect(cpuSeconds([2 ** 22 + 12345])).rejects.toThrow(/ENOENT/);
  });
});
