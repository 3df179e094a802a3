import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FDS_PER_CONNECTION, fdBudget, KERNEL_PIPE_SOFT_PAGES, PIPE_SIZES, readPipeSoftPages, SPLICE_EXTRA_FDS, WorkerBudget } from "../../src/ztunnel/proxy/budget.js";
import { ThrottledLog } from "../../src/ztunnel/proxy/limits.js";
import { parseNofile } from "../../src/ztunnel/proxy/rlimit.js";
import { captureLogs } from "../fixtures/log-capture.js";

// The fd budget (issue 16 item 3): derived from the real limit, a reserve kept back, and per
// pod a share that always leaves room for another pod.

function setup(limit = 1024, workers = 2, pipeSoftPages?: number) {
  const { log, lines } = captureLogs("warn");
  let t = 0;
  const b = new WorkerBudget(fdBudget(limit, workers, pipeSoftPages), new ThrottledLog(log, 10_000, () => t), () => t, 5_000);
  return { b, lines, advance: (ms: number) => (t += ms) };
}

describe("fd budget", () => {
  it("keeps a reserve and splits the rest over the workers, two descriptors per connection", () => {
    const f = fdBudget(20_000, 2);
    expect(f.reserve).toBe(2_000);
    expect(f.perWorkerConnections).toBe(4_500);
    expect(f.perPodHandshakes).toBeLessThan(f.perWorkerHandshakes);
    expect(fdBudget(1024, 2)).toMatchObject({ reserve: 256, perWorkerConnections: 192 });
  });

  it("reads the soft and hard limits of /proc/self/limits", () => {
    expect(parseNofile("Limit Soft Limit Hard Limit Units\nMax open files            1024                 524288               files\n")).toEqual({ soft: 1024, hard: 524288 });
    expect(parseNofile("Max open files            unlimited            unlimited            files\n")).toEqual({ soft: Infinity, hard: Infinity });
    expect(() => parseNofile("nothing")).toThrow(/Max open files/);
  });

  it("one pod at its share is refused (warned once, counted) while another pod still gets in", () => {
    const { b, lines } = setup();
    const greedy = b.addPod("g", "ns/greedy");
    const other = b.addPod("o", "ns/other");
    const share = b.podShare();
    expect(share).toBe(32); // 192 / 2 directions / (2 pods + 1)
    // The greedy pod's inbound side is its own share: it can still be reached.
    expect(greedy.connection("inbound")).toBeDefined();
    const held = [];
    for (let i = 0; i < share; i++) held.push(greedy.connection("outbound"));
    expect(held.every((r) => r !== undefined)).toBe(true);
    expect(greedy.connection("outbound")).toBeUndefined();
    expect(greedy.connection("outbound")).toBeUndefined();
    expect(other.connection("outbound")).toBeDefined();
    const warnings = lines().filter((l) => l.msg === "connection budget reached; refusing the pod's new connections");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ pod: "ns/greedy", reason: "pod_share" });
    expect(b.takeCounters()).toEqual({ shed: { pod_share: 2, worker_budget: 0, handshakes: 0, fd_pressure: 0 }, fdExhausted: 0 });
    expect(b.takeCounters()).toBeUndefined();
    // Released connections are admitted again; a pod that leaves gives its share back.
    held[0]!();
    held[0]!(); // idempotent
    expect(greedy.connection("outbound")).toBeDefined();
    other.leave();
    expect(b.podShare()).toBe(48);
  });

  it("counts descriptors: a spliced connection's pipes come out of its pod's share, and do not fit past it", () => {
    const { b, lines } = setup();
    const greedy = b.addPod("g", "ns/greedy");
    const other = b.addPod("o", "ns/other");
    const shareFds = b.podShareFds();
    expect(shareFds).toBe(64); // 384 fds / 2 directions / (2 pods + 1)
    // Spliced connections (2 + 4 fds) until the next one's pipes no longer fit.
    const spliced = Math.floor(shareFds / (FDS_PER_CONNECTION + SPLICE_EXTRA_FDS));
    const held: Array<() => void> = [];
    for (let i = 0; i < spliced; i++) {
      held.push(greedy.connection("outbound")!);
      const pipes = greedy.extraFds("outbound", SPLICE_EXTRA_FDS);
      expect(pipes).toBeDefined();
      held.push(pipes!);
    }
    expect(b.stats.fds).toBe(spliced * 6);
    // The next connection is still admitted at its JS cost, but its pipes are refused, quietly.
    const plain = greedy.connection("outbound");
    expect(plain).toBeDefined();
    expect(greedy.extraFds("outbound", SPLICE_EXTRA_FDS)).toBeUndefined();
    expect(lines().filter((l) => l.msg === "connection budget reached; refusing the pod's new connections")).toHaveLength(0);
    expect(b.takeCounters()).toBeUndefined();
    // The pod's other direction and the other pod keep their own room for pipes.
    expect(greedy.extraFds("inbound", SPLICE_EXTRA_FDS)).toBeDefined();
    expect(other.connection("outbound")).toBeDefined();
    expect(other.extraFds("outbound", SPLICE_EXTRA_FDS)).toBeDefined();
    // Connections fill what is left of the share at 2 fds each, then are refused.
    while (greedy.connection("outbound") !== undefined);
    expect(b.takeCounters()).toMatchObject({ shed: { pod_share: 1 } });
    // Pipes given back make room again.
    held[1]!();
    expect(greedy.connection("outbound")).toBeDefined();
  });

  it("pipe pages: half the user's soft limit per worker, read from procfs (0 = unlimited: the kernel default)", () => {
    expect(fdBudget(20_000, 2, 16_384).perWorkerPipePages).toBe(4_096);
    expect(fdBudget(20_000, 1, 0).perWorkerPipePages).toBe(KERNEL_PIPE_SOFT_PAGES / 2);
    const dir = mkdtempSync(join(tmpdir(), "pipe-soft-"));
    try {
      writeFileSync(join(dir, "soft"), "2048\n");
      expect(readPipeSoftPages(join(dir, "soft"))).toBe(2048);
      writeFileSync(join(dir, "soft"), "lots\n");
      expect(readPipeSoftPages(join(dir, "soft"))).toBe(KERNEL_PIPE_SOFT_PAGES);
      expect(readPipeSoftPages(join(dir, "missing"))).toBe(KERNEL_PIPE_SOFT_PAGES);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a pod past its share of pipe pages gets smaller pipes, then none, while another pod keeps the largest", () => {
    // 4096 pages per worker; 2 pods: a share of 4096 / 3 = 1365 pages each.
    const { b, lines } = setup(1024, 2, 16_384);
    const greedy = b.addPod("g", "ns/greedy");
    const other = b.addPod("o", "ns/other");
    expect(b.podSharePipePages()).toBe(1365);
    const [large, medium, small] = PIPE_SIZES as [number, number, number];
    const sizes: number[] = [];
    const held: Array<() => void> = [];
    for (let g = greedy.pipes(); g !== undefined; g = greedy.pipes()) {
      sizes.push(g.size);
      held.push(g.release);
    }
    // Two pipes per connection: 256 KiB ones are 128 pages, 64 KiB 32, 16 KiB 8.
    expect(sizes.filter((s) => s === large)).toHaveLength(10); // 1280 pages
    expect(sizes.filter((s) => s === medium)).toHaveLength(2); // 1344
    expect(sizes.filter((s) => s === small)).toHaveLength(2); // 1360, then 5 pages left
    expect(sizes).toEqual([...sizes].sort((x, y) => y - x));
    expect(b.stats.pipePages).toBe(1360);
    expect(other.pipes()?.size).toBe(large);
    // Nothing refused, nothing warned or counted: the connection goes to the JS relay quietly.
    expect(lines()).toHaveLength(0);
    expect(b.takeCounters()).toBeUndefined();
    // Given back (idempotent): the largest fits again.
    held[0]!();
    held[0]!();
    expect(greedy.pipes()?.size).toBe(large);
    expect(b.stats.pipePages).toBe(1360 + 128);
  });

  it("under fd pressure the pods holding the most are shed first, small ones still get in, and it ends", () => {
    const { b, lines, advance } = setup();
    const big = b.addPod("b", "ns/big");
    const small = b.addPod("s", "ns/small");
    for (let i = 0; i < 20; i++) big.connection("outbound");
    b.exhausted("EMFILE", "probe");
    expect(lines().some((l) => l.code === "EMFILE" && String(l.msg).includes("out of file descriptors"))).toBe(true);
    expect(big.connection("outbound")).toBeUndefined();
    expect(small.connection("outbound")).toBeDefined();
    expect(b.takeCounters()).toMatchObject({ shed: { fd_pressure: 1 }, fdExhausted: 1 });
    advance(5_001);
    expect(big.connection("outbound")).toBeDefined();
  });

  it("bounds unfinished handshakes per pod and per worker", () => {
    const { b } = setup();
    const p = b.addPod("p", "ns/p");
    const q = b.addPod("q", "ns/q");
    const per = fdBudget(1024, 2).perPodHandshakes;
    const slots = Array.from({ length: per }, () => p.handshake());
    expect(slots.every((s) => s !== undefined)).toBe(true);
    expect(p.handshake()).toBeUndefined();
    expect(q.handshake()).toBeDefined();
    slots[0]!();
    expect(p.handshake()).toBeDefined();
    expect(b.stats.handshakes).toBe(per + 1);
  });
});
