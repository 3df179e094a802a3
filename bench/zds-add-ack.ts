// Benchmark (not a test): 1,000 ZDS Adds, each carrying a netns fd, through one connection
// from our agent-side server to our ztunnel-side client; prints the Add→Ack latency spread.
// Run after `npm run build`: node dist/bench/zds-add-ack.js [count]
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { NetnsHandle } from "../src/native/index.js";
import { rootLogger } from "../src/shared/log.js";
import { createZdsClient, createZdsServer } from "../src/zds/index.js";
import type { WorkloadProxyManager } from "../src/zds/index.js";

const count = Number(process.argv[2] ?? 1000);
rootLogger().level = "warn";

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "zds-bench-"));
  const socketPath = join(dir, "ztunnel", "ztunnel.sock");
  const uid = process.getuid?.() ?? 0;
  const netns = NetnsHandle.open("/proc/self/ns/net");
  // A manager that does no work, so the numbers are ZDS itself: codec, SCM_RIGHTS, fd adoption.
  const manager: WorkloadProxyManager<NetnsHandle> = { start: async () => {}, stop: async () => {} };
  const server = createZdsServer({ list: () => [] }, { socketPath, allowedUids: [uid] });
  const client = createZdsClient(manager, { socketPath });
  const fdsBefore = readdirSync("/proc/self/fd").length;
  try {
    client.start();
    await new Promise<void>((resolve) => client.once("snapshot", () => resolve()));
    const info = { name: "bench", namespace: "default", serviceAccount: "default" };
    const latencies: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const start = performance.now();
      await server.podAdded(`pod-${i}`, info, netns);
      latencies.push(performance.now() - start);
    }
    const total = performance.now() - t0;
    latencies.sort((a, b) => a - b);
    const fmt = (ms: number): string => `${(ms * 1000).toFixed(0)} µs`;
    console.log(`ZDS Add→Ack with netns fd, ${count} Adds through one SEQPACKET connection`);
    console.log(`  p50 ${fmt(percentile(latencies, 50))}  p90 ${fmt(percentile(latencies, 90))}  p99 ${fmt(percentile(latencies, 99))}  max ${fmt(latencies.at(-1)!)}`);
    console.log(`  total ${total.toFixed(1)} ms, ${((count / total) * 1000).toFixed(0)} Adds/s`);
  } finally {
    await client.close(); // stops every proxy, closes every received netns fd
    server.close();
    netns.close();
    await new Promise((r) => setTimeout(r, 50));
    const fdsAfter = readdirSync("/proc/self/fd").length;
    console.log(`  open fds before ${fdsBefore}, after ${fdsAfter}${fdsAfter > fdsBefore ? " (LEAK)" : ""}`);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
