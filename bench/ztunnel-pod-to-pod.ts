// Benchmark (not a test): pod → pod across two nodes through the real ztunnel binaries (HBONE),
// against raw TCP between the same two pods measured in the same run before capture is on.
// Reports throughput with 1 and 4 parallel connections and 1 KiB ping-pong latency, each as
// a ratio to raw TCP; also the same proxy hops without HBONE (plain TCP through both ztunnels). Needs root and `npm run build`:
//   node dist/bench/ztunnel-pod-to-pod.js [MiB per connection, default 256] [round trips, default 2000]
import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { rootLogger } from "../src/shared/log.js";
import { Mesh } from "../test/fixtures/ztunnel-e2e-cluster.js";
import type { PodInfo } from "../test/harness/topology.js";

const MiB = 1024 * 1024;
const mibPerConn = Number(process.argv[2] ?? 256);
const roundTrips = Number(process.argv[3] ?? 2000);
const SINK_PORT = 9000;
const ECHO_PORT = 9001;
rootLogger().level = "warn";

interface Result {
  mbps1: number;
  mbps4: number;
  p50us: number;
  p99us: number;
}

async function throughput(mesh: Mesh, from: PodInfo, to: PodInfo, conns: number): Promise<number> {
  const bytes = mibPerConn * MiB;
  const chunk = Buffer.alloc(256 * 1024, 0x5a);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conns }, async () => {
      const c = await mesh.dial(from, to.ip, SINK_PORT);
      const done = new Promise<void>((resolve, reject) => {
        c.on("data", () => undefined);
        c.once("end", () => resolve());
        c.once("error", reject);
      });
      for (let sent = 0; sent < bytes; sent += chunk.length) {
        if (!c.write(chunk)) await new Promise((r) => c.once("drain", r));
      }
      c.end();
      await done; // the sink ends after it has read everything
      c.destroy();
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return (conns * bytes * 8) / seconds / 1e6;
}

async function pingPong(mesh: Mesh, from: PodInfo, to: PodInfo): Promise<{ p50: number; p99: number }> {
  const c: Socket = await mesh.dial(from, to.ip, ECHO_PORT);
  c.setNoDelay(true);
  const msg = Buffer.alloc(1024, 0x61);
  const rtts: number[] = [];
  let pending: (() => void) | undefined;
  let got = 0;
  c.on("data", (d: Buffer) => {
    got += d.length;
    if (got >= msg.length) {
      got -= msg.length;
      pending?.();
    }
  });
  for (let i = 0; i < roundTrips + 100; i++) {
    const t = performance.now();
    await new Promise<void>((resolve) => {
      pending = resolve;
      c.write(msg);
    });
    if (i >= 100) rtts.push((performance.now() - t) * 1000); // first 100 are warm-up
  }
  c.destroy();
  rtts.sort((a, b) => a - b);
  return { p50: rtts[Math.floor(rtts.length / 2)]!, p99: rtts[Math.floor(rtts.length * 0.99)]! };
}

async function measure(mesh: Mesh, from: PodInfo, to: PodInfo): Promise<Result> {
  const mbps1 = await throughput(mesh, from, to, 1);
  const mbps4 = await throughput(mesh, from, to, 4);
  const lat = await pingPong(mesh, from, to);
  const r1 = (x: number): number => Math.round(x * 10) / 10;
  return { mbps1: r1(mbps1), mbps4: r1(mbps4), p50us: r1(lat.p50), p99us: r1(lat.p99) };
}

async function main(): Promise<void> {
  const mesh = await Mesh.create({ podsPerNode: 1, deferRules: true, env: { LOG_LEVEL: "warn" } });
  try {
    const a = mesh.topo.pod(0, 0);
    const b = mesh.topo.pod(1, 0);
    await mesh.app(b, SINK_PORT, (s) => {
      s.on("data", () => undefined);
      s.once("end", () => s.end());
    });
    await mesh.app(b, ECHO_PORT, (s) => s.pipe(s));
    const raw = await measure(mesh, a, b);
    await mesh.applyRules();
    await Promise.all([mesh.startZtunnel(0), mesh.startZtunnel(1)]);
    const hbone = await measure(mesh, a, b);
    const dump = await mesh.configDump(1);
    if (dump.counters.inbound.opened === 0) throw new Error("traffic did not go through ztunnel");
    // Same two proxy hops without TLS/HTTP/2 (b declared TCP: passthrough out, 15006 in), to
    // tell the proxying cost from the HBONE cost.
    await mesh.setProtocol(b, "TCP");
    await new Promise((r) => setTimeout(r, 1_000)); // the state file reload
    const plainProxied = await measure(mesh, a, b);
    const ratio = (x: number, y: number): number => Math.round((x / y) * 1000) / 1000;
    const out = {
      mibPerConnection: mibPerConn,
      roundTrips,
      raw,
      hbone,
      plainProxied,
      ratio: {
        throughput1: ratio(hbone.mbps1, raw.mbps1),
        throughput4: ratio(hbone.mbps4, raw.mbps4),
        latencyP50: ratio(hbone.p50us, raw.p50us),
        latencyP99: ratio(hbone.p99us, raw.p99us),
        plainProxiedThroughput1: ratio(plainProxied.mbps1, raw.mbps1),
        plainProxiedLatencyP50: ratio(plainProxied.p50us, raw.p50us),
      },
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    await mesh.destroy();
  }
}

await main();
