import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NetnsHandle } from "../../src/native/index.js";
import { errorMessage } from "../../src/shared/errors.js";
import { NativeSocketFactory } from "../../src/sockets/index.js";
import { createZdsServer, type PodEntry } from "../../src/zds/index.js";
import { ztunnelNodeArgv } from "../../src/ztunnel/node-flags.js";
import { generateRoot } from "../../src/ztunnel/tls/ca.js";
import { ZTUNNEL_MAIN, type ConfigDump } from "../../test/fixtures/ztunnel-e2e-cluster.js";
import { killAndWait, netnsPath, run } from "../../test/harness/netns.js";
import { Topology } from "../../test/harness/topology.js";
import { BenchError } from "./errors.js";
import { setFigure, type Figures } from "./figures.js";
import { rssMiB } from "./proc.js";
import { ztunnelNodeArgs } from "./profiling.js";
import { round, spread } from "./stats.js";
import type { Teardown } from "./teardown.js";

// Machine-bound figure: N pods enrolled on one node over ZDS (Add one by one, as the agent
// does), each Add acked only once every worker has its three listeners up in that pod; then a
// ztunnel restart with all N pods in the snapshot. Pods are bare netns (listeners bind
// 0.0.0.0 and need no link; no traffic flows), created in one `ip -batch` and timed apart.

const WORKERS = 2;
const LISTENERS_PER_WORKER = 3;

export async function scaleRow(pods: number, figures: Figures, teardown: Teardown, log: (s: string) => void): Promise<Record<string, unknown>> {
  const topo = await Topology.create({ nodes: 1, podsPerNode: 0 });
  teardown.add("scale topology", () => topo.destroy());
  const node = topo.node(0);
  // Named under the topology's prefix: a crashed run's stale sweep removes them too.
  const names = Array.from({ length: pods }, (_, i) => `a-${topo.id}-s${i}`);
  teardown.add("scale pod netns", async () => {
    await run("ip", ["-force", "-batch", "-"], { input: names.map((n) => `netns del ${n}`).join("\n") + "\n" }).catch(() => undefined);
  });
  const dir = await mkdtemp(join(tmpdir(), "bench-scale-"));
  teardown.add("scale temp dir", () => rm(dir, { recursive: true, force: true }));
  const details: Record<string, unknown> = { pods, workers: WORKERS };

  let t = process.hrtime.bigint();
  await run("ip", ["-batch", "-"], { input: names.map((n) => `netns add ${n}`).join("\n") + "\n" });
  const createS = Number(process.hrtime.bigint() - t) / 1e9;
  setFigure(figures, "scale.netnsCreateSeconds", round(createS, 2), "s");
  log(`scale: ${pods} netns created in ${createS.toFixed(2)} s`);

  const root = await generateRoot("cluster.local");
  await mkdir(join(dir, "ca"), { mode: 0o700 });
  await writeFile(join(dir, "ca", "root-cert.pem"), root.certPem);
  await writeFile(join(dir, "ca", "ca-key.pem"), root.keyPem, { mode: 0o600 });
  const ip = (i: number): string => `10.250.${Math.floor(i / 250)}.${(i % 250) + 1}`;
  const state = ["workloads:"];
  // Each pod its own service account: one certificate per pod, the costly case.
  for (let i = 0; i < pods; i++) state.push(`  - { uid: s${i}, name: s${i}, namespace: scale, serviceAccount: sa${i}, workloadIps: ["${ip(i)}"], protocol: HBONE, node: node0 }`);
  await writeFile(join(dir, "state.yaml"), state.join("\n") + "\n");

  const entries = names.map((n, i): PodEntry => ({ uid: `s${i}`, info: { name: `s${i}`, namespace: "scale", serviceAccount: `sa${i}` }, netns: netnsPath(n) }));
  const enrolled: PodEntry[] = [];
  const sockPath = join(dir, "zds", "ztunnel.sock");
  const zds = createZdsServer({ list: () => enrolled }, { socketPath: sockPath });
  teardown.add("scale ZDS server", async () => zds.close());
  const env = {
    ...process.env,
    INPOD_UDS: sockPath,
    LOCAL_XDS_PATH: join(dir, "state.yaml"),
    CA_ROOT_DIR: join(dir, "ca"),
    ZTUNNEL_WORKER_THREADS: String(WORKERS),
    NODE_NAME: "node0",
    LOG_LEVEL: "warn",
    // The bare netns have lo down, so there is no 127.0.0.1 for the DNS proxy's listeners (a
    // real pod always has lo up); this row measures the three proxy listeners per worker.
    DNS_PROXY: "false",
  };
  const netns = NetnsHandle.open(node.netnsPath);
  teardown.add("scale node netns handle", async () => netns.close());
  const factory = new NativeSocketFactory({ netns, mark: undefined, reusePort: false, spoofSource: false });
  const get = (port: number, path: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path, createConnection: () => factory.connectTcp({ host: "127.0.0.1", port }) }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.setTimeout(10_000, () => req.destroy(new Error(`GET ${path} timed out`)));
      req.on("error", reject);
      req.end();
    });
  const nodeArgs = ztunnelNodeArgs();
  const stop = (child: ReturnType<Topology["spawn"]>): Promise<void> => killAndWait(child, nodeArgs.length > 0 ? "SIGTERM" : "SIGKILL");
  const start = (): ReturnType<Topology["spawn"]> => {
    const child = topo.spawn(node.ns, process.execPath, ztunnelNodeArgv(ZTUNNEL_MAIN, nodeArgs), { env });
    child.stdout?.resume();
    let err = "";
    child.stderr?.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.once("exit", (code, sig) => void (code !== 0 && code !== null ? log(`scale ztunnel exited ${code ?? sig}: ${err.slice(-500)}`) : undefined));
    return child;
  };
  const waitReady = async (timeoutMs: number): Promise<number> => {
    const t0 = process.hrtime.bigint();
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      const r = await get(15021, "/healthz/ready").catch((e: unknown) => ({ status: 0, body: errorMessage(e) }));
      if (r.status === 200) return Number(process.hrtime.bigint() - t0) / 1e9;
      last = `${r.status} ${r.body.slice(0, 200)}`;
      if (Date.now() > deadline) throw new BenchError(`scale ztunnel not ready after ${timeoutMs / 1000} s: ${last}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const countUp = async (): Promise<number> => {
    const dump = JSON.parse((await get(15000, "/config_dump")).body) as ConfigDump;
    return Object.values(dump.workloadState).filter((w) => w.listeners.length === WORKERS * LISTENERS_PER_WORKER).length;
  };

  let zt = start();
  // Start-up with the state loaded and no pods yet: the fixed part of restartReadySeconds.
  details.startReadySeconds = round(await waitReady(30_000), 2);
  const rssIdle = await rssMiB(zt.pid!);
  const latencies: number[] = [];
  const cpuBefore = await cpuSeconds(zt.pid!);
  t = process.hrtime.bigint();
  for (const e of entries) {
    const a = process.hrtime.bigint();
    await zds.podAdded(e.uid, e.info, e.netns!);
    latencies.push(Number(process.hrtime.bigint() - a) / 1e6);
    enrolled.push(e);
    if (Number(process.hrtime.bigint() - t) > 300e9) throw new BenchError(`enrolling ${pods} pods took more than 300 s (${enrolled.length} done)`);
  }
  const enrollS = Number(process.hrtime.bigint() - t) / 1e9;
  // CPU the ztunnel (all threads) spent on the enrollment: less sensitive to a busy machine than wall time.
  const enrollCpuS = (await cpuSeconds(zt.pid!)) - cpuBefore;
  const up = await countUp();
  if (up !== pods) throw new BenchError(`after ${pods} Acks only ${up} pods have ${WORKERS * LISTENERS_PER_WORKER} listeners in config_dump`);
  await new Promise((r) => setTimeout(r, 1000));
  const rss = await rssMiB(zt.pid!);
  const lat = spread(latencies);
  setFigure(figures, "scale.enrollSeconds", round(enrollS, 2), "s");
  setFigure(figures, "scale.rssMiB", round(rss), "MiB");
  setFigure(figures, "scale.addAckP99Ms", round(lat.p99, 2), "ms");
  setFigure(figures, "scale.enrollCpuSeconds", round(enrollCpuS, 2), "s");
  details.enroll = { seconds: enrollS, cpuSeconds: round(enrollCpuS, 2), rssIdleMiB: round(rssIdle), rssMiB: round(rss), addAckMs: { p50: round(lat.p50, 2), p99: round(lat.p99, 2), max: round(lat.max, 2) } };
  log(`scale: ${pods} pods enrolled in ${enrollS.toFixed(2)} s (ztunnel CPU ${enrollCpuS.toFixed(2)} s), Add→Ack p99 ${lat.p99.toFixed(1)} ms, ztunnel RSS ${rss.toFixed(0)} MiB (idle ${rssIdle.toFixed(0)} MiB)`);

  // Restart: every pod comes back from the snapshot.
  try {
    await stop(zt);
    zt = start();
    const readyS = await waitReady(120_000);
    const upAgain = await countUp();
    if (upAgain !== pods) throw new BenchError(`after restart only ${upAgain} of ${pods} pods are up`);
    setFigure(figures, "scale.restartReadySeconds", round(readyS, 2), "s");
    setFigure(figures, "scale.restartRssMiB", round(await rssMiB(zt.pid!)), "MiB");
    log(`scale: ztunnel restarted with ${pods} pods in the snapshot, ready in ${readyS.toFixed(2)} s`);
  } catch (err) {
    setFigure(figures, "scale.restartReadySeconds", err instanceof Error ? err : new Error(String(err)), "s");
  }
  await stop(zt);
  t = process.hrtime.bigint();
  await teardown.runOne("scale pod netns");
  details.netnsDeleteSeconds = round(Number(process.hrtime.bigint() - t) / 1e9, 2);
  return details;
}

/** User + system CPU of a process, all its threads (/proc/<pid>/stat, clock ticks of 10 ms). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
