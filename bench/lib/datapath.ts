import { mkdtemp, rm } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { errorMessage } from "../../src/shared/errors.js";
import { rootLogger } from "../../src/shared/log.js";
import { fdBudget, WorkerBudget } from "../../src/ztunnel/proxy/budget.js";
import { ThrottledLog } from "../../src/ztunnel/proxy/limits.js";
import { Mesh, readN } from "../../test/fixtures/ztunnel-e2e-cluster.js";
import type { PodInfo } from "../../test/harness/topology.js";
import type { FloorKind } from "../floor/tunnel.js";
import { BenchError, shortReason } from "./errors.js";
import { isRelayPath, RelayPaths } from "./relay-paths.js";
import { setFigure, type Figures } from "./figures.js";
import { iperfClientArgs, parseIperfJson, type IperfResult } from "./iperf.js";
import { parseConnRate, parseLatency } from "./pingpong.js";
import { cpuDuring } from "./cpu.js";
import { witness, type WitnessAt } from "./witness.js";
import { finish, nofileLimit, rssMiB, waitForLine, waitListening } from "./proc.js";
import { ztunnelNodeArgs } from "./profiling.js";
import { round } from "./stats.js";
import type { Teardown } from "./teardown.js";

// The pod-to-pod rows: one 2-node mesh (Mesh from the ztunnel e2e fixture: a ztunnel process
// per node, this process playing the agent), client pod(s) on node 0, server pod(s) on node 1.
// Each figure is measured raw, through stunnel, through the Node floor relays (bench/floor) and
// through HBONE back to back, toggling the in-pod redirection, so all see the same machine load
// as closely as possible.

const IPERF_PORT = 5201;
const ECHO_PORT = 9100;
const CLOSE_PORT = 9101;
const IDLE_PORT = 9102;
export const PINGPONG_TOOL = join(import.meta.dirname, "pingpong-tool.js");

export type PathName = "raw" | "stunnel" | FloorKind | "hbone";
/** Plaintext paths through ztunnel, measured 1 stream against the same round's raw figure. */
export type PlainPathName = "passthrough" | "inboundPlain";
type AnyPath = PathName | PlainPathName;

/** Where a path's connections are counted by a ztunnel (config_dump counters). */
const WITNESS: Partial<Record<AnyPath, WitnessAt>> = {
  hbone: { node: 1, direction: "inbound" },
  // Captured client pod (node 0) → uncaptured pod: node 0's outbound passthrough.
  passthrough: { node: 0, direction: "outbound" },
  // Uncaptured pod on node 0 → captured server pod: node 1's inbound plaintext listener (15006).
  inboundPlain: { node: 1, direction: "inbound" },
};

const GiB = 1024 ** 3;
const WORKERS = 2;

export interface DatapathConfig {
  durationS: number;
  roundTrips: number;
  connConcurrency: number;
  /** Warm-up seconds per path and round: connections before the rate counts, round trips (after 200) before latency samples do. */
  connWarmupS: number;
  latencyWarmupS: number;
  idleConnections: number;
  /** Measure the "4 pods x 1 stream" HBONE shape (needs 4 pods per node). */
  fourPods: boolean;
  /** Measure passthrough and inbound plaintext (one uncaptured pod on each node). */
  plainPaths: boolean;
  /** The Node floor relays to start (bench/floor). */
  floorPaths: readonly FloorKind[];
}

export class Datapath {
  private captured = false;
  /** stunnel and the Node floor paths (set up before the ztunnels start). */
  private relays!: RelayPaths;
  private hboneError: string | undefined;
  readonly details: Record<string, unknown> = {};

  private constructor(
    private readonly mesh: Mesh,
    private readonly cfg: DatapathConfig,
    private readonly dir: string,
  ) {}

  static async create(cfg: DatapathConfig, teardown: Teardown, log: (s: string) => void): Promise<Datapath> {
    const dir = await mkdtemp(join(tmpdir(), "bench-datapath-"));
    teardown.add("datapath temp dir", () => rm(dir, { recursive: true, force: true }));
    // LOG_LEVEL warn: no per-connection access records on stderr during measurements.
    const plain = cfg.plainPaths ? 1 : 0;
    const mesh = await Mesh.create({
      podsPerNode: cfg.fourPods ? 4 : 1,
      uncaptured: plain,
      uncapturedOnNode0: plain,
      deferRules: true,
      workers: WORKERS,
      env: { LOG_LEVEL: "warn" },
      nodeArgs: ztunnelNodeArgs(),
    });
    teardown.add("datapath mesh (ztunnels, stunnel, iperf3, netns)", () => mesh.destroy());
    const dp = new Datapath(mesh, cfg, dir);
    await dp.setup(log);
    return dp;
  }

  private get client(): PodInfo {
    return this.mesh.topo.pod(0, 0);
  }

  private get server(): PodInfo {
    return this.mesh.topo.pod(1, 0);
  }

  /** Captured pods on node 1. */
  private get serverPods(): PodInfo[] {
    return this.mesh.captured.filter((p) => p.node === 1);
  }

  /** The uncaptured pod on `node` (plaintext rows), or why there is none. */
  private plainPod(node: number): PodInfo {
    const pod = this.mesh.uncaptured.find((p) => p.node === node);
    if (pod === undefined) throw new BenchError(`no uncaptured pod on node ${node} (the mesh was built without the plaintext rows)`);
    return pod;
  }

  private async setup(log: (s: string) => void): Promise<void> {
    const { topo } = this.mesh;
    for (const pod of topo.pods) {
      // Short connections: reuse TIME_WAIT ports and a wide port range in every pod.
      await topo.exec(pod.ns, "sysctl", ["-q", "-w", "net.ipv4.tcp_tw_reuse=1", "-w", "net.ipv4.ip_local_port_range=1024 65000"]);
    }
    // iperf3 servers in every node-1 pod, captured or not (the passthrough row's is uncaptured).
    for (const pod of topo.pods.filter((p) => p.node === 1)) {
      const iperf = topo.spawn(pod.ns, "iperf3", ["-s", "-p", String(IPERF_PORT)]);
      iperf.stdout?.resume();
      iperf.stderr?.resume();
      await waitListening(topo, pod.ns, IPERF_PORT, `iperf3 server in ${pod.name}`);
    }
    const pp = topo.spawnNode(this.server.ns, PINGPONG_TOOL, ["server", String(ECHO_PORT), String(CLOSE_PORT)]);
    await waitForLine(pp, "ready", "ping-pong server", 10_000);
    pp.stdout?.resume();
    // The app closes its half when the client does: a half-open connection would hold its
    // HBONE stream (and the pod's fd share) until the relay's half-close timeout.
    for (const pod of this.serverPods) {
      await this.mesh.app(pod, IDLE_PORT, (s) => {
        s.on("data", (d: Buffer) => s.write(d));
        s.on("end", () => s.end());
      });
    }
    this.relays = await RelayPaths.start(topo, this.dir, this.server.ip, { iperf: IPERF_PORT, echo: ECHO_PORT, close: CLOSE_PORT }, ["stunnel", ...this.cfg.floorPaths], log);
    try {
      await Promise.all([this.mesh.startZtunnel(0), this.mesh.startZtunnel(1)]);
      this.details.fdShare = await this.fdShare();
      // Which process is which node (bench/profile.ts names profile files by pid).
      this.details.ztunnelPids = [0, 1].map((i) => this.mesh.node(i).ztunnel?.pid ?? null);
    } catch (err) {
      this.hboneError = `ztunnel not usable: ${shortReason(errorMessage(err))}`;
      log(this.hboneError);
    }
  }

  /**
   * The fd limit ztunnel ended up with (it raises soft to hard at start; the hard limit is the
   * machine's) and what proxy/budget.ts gives each pod of it: every row must stay inside it.
   */
  private async fdShare(): Promise<{ nofile: number; workers: number; podsPerNode: number; perPodPerWorkerPerDirection: number }> {
    const pid = this.mesh.node(1).ztunnel?.pid;
    if (pid === undefined) throw new BenchError("ztunnel pid unknown");
    const nofile = await nofileLimit(pid);
    const podsPerNode = this.serverPods.length;
    // ztunnel's own arithmetic: a worker's budget with this node's pods on it.
    const budget = new WorkerBudget(fdBudget(nofile, WORKERS), new ThrottledLog(rootLogger()));
    for (const pod of this.serverPods) budget.addPod(this.mesh.uid(pod), pod.name);
    return { nofile, workers: WORKERS, podsPerNode, perPodPerWorkerPerDirection: budget.stats.share };
  }

  /** In-pod redirection on (HBONE) or off (raw, stunnel) in every pod. */
  private async capture(on: boolean): Promise<void> {
    if (this.captured === on) return;
    for (const pod of this.mesh.captured) {
      if (on) await this.mesh.redirector.apply(pod.netnsPath);
      else await this.mesh.redirector.remove(pod.netnsPath);
    }
    this.captured = on;
  }

  /** Who dials where for a plaintext path through ztunnel (capture on). */
  private async plainTarget(path: PlainPathName): Promise<{ from: PodInfo; host: string; port: number }> {
    if (this.hboneError !== undefined) throw new BenchError(this.hboneError);
    const ends = path === "passthrough" ? { from: this.client, to: this.plainPod(1) } : { from: this.plainPod(0), to: this.server };
    await this.capture(true);
    return { from: ends.from, host: ends.to.ip, port: IPERF_PORT };
  }

  /** A check to run after a path's traffic: the ztunnel that should carry it counted it. */
  private witness(path: AnyPath): Promise<() => Promise<void>> {
    return witness(this.mesh, WITNESS[path]);
  }

  /** The processes whose CPU a path's bytes cost (both ends of the tunnel); none for raw. */
  private tunnelPids(path: PathName): number[] {
    if (isRelayPath(path)) return this.relays.pids(path);
    if (path === "hbone") return [0, 1].flatMap((i) => (this.mesh.node(i).ztunnel?.pid === undefined ? [] : [this.mesh.node(i).ztunnel!.pid!]));
    return [];
  }

  /** Where the client pod dials for a path, or why the path is unavailable. */
  private async target(path: PathName, kind: "iperf" | "echo" | "close"): Promise<{ host: string; port: number }> {
    const direct = { iperf: IPERF_PORT, echo: ECHO_PORT, close: CLOSE_PORT }[kind];
    if (isRelayPath(path)) {
      const relay = this.relays.get(path);
      await this.capture(false);
      return { host: relay.host, port: relay.ports[kind]! };
    }
    if (path === "hbone") {
      if (this.hboneError !== undefined) throw new BenchError(this.hboneError);
      await this.capture(true);
    } else {
      await this.capture(false);
    }
    return { host: this.server.ip, port: direct };
  }

  private async iperf(from: PodInfo, host: string, port: number, streams: number): Promise<IperfResult> {
    const d = this.cfg.durationS;
    const what = `iperf3 -P ${streams} to ${host}:${port}`;
    const r = await finish(this.mesh.topo.spawn(from.ns, "iperf3", iperfClientArgs(host, port, streams, d)), what, (d + 30) * 1000);
    // On failure iperf3 -J still prints its report, with the reason in "error".
    if (r.stdout.trim().startsWith("{")) return parseIperfJson(r.stdout);
    throw new BenchError(`${what} exited ${r.code}: ${r.stderr.trim().slice(-300)}`);
  }

  /**
   * Gbit/s for each path, 1 and 4 streams, with the tunnel's CPU seconds per GiB (every path but
   * raw); with 1 stream also the plaintext paths through ztunnel; HBONE also 4 pods x 1 stream.
   */
  async throughput(figures: Figures, paths: readonly PathName[], plain: readonly PlainPathName[], log: (s: string) => void): Promise<void> {
    for (const streams of [1, 4]) {
      for (const path of paths) {
        const name = `throughput.${path}.${streams}`;
        // 1 stream is the target's row; 4 streams is measured too, to tell a slower path from
        // a costlier one when the machine is saturated.
        const cpuName = streams === 1 ? `cpu.${path}PerGiB` : `cpu.${path}PerGiB${streams}Streams`;
        const pids = this.tunnelPids(path);
        try {
          const t = await this.target(path, "iperf");
          const check = await this.witness(path);
          const run = await cpuDuring(pids, () => this.iperf(this.client, t.host, t.port, streams));
          const r = run.result;
          this.details[name] = r;
          await check();
          setFigure(figures, name, round(r.receivedBps / 1e9, 3), "Gbit/s");
          if (pids.length > 0) {
            const perGiB = (run.user + run.system) / (r.totalBytes / GiB);
            this.details[cpuName] = { processes: pids.length, userS: round(run.user, 2), systemS: round(run.system, 2), gib: round(r.totalBytes / GiB, 3), iperfClientCpuPct: r.cpuLocal, iperfServerCpuPct: r.cpuRemote };
            setFigure(figures, cpuName, round(perGiB, 3), "s/GiB");
          }
        } catch (err) {
          setFigure(figures, name, asError(err), "Gbit/s");
          if (pids.length > 0 || path !== "raw") setFigure(figures, cpuName, asError(err), "s/GiB");
        }
        log(`${name}: ${show(figures[name])}${figures[cpuName] !== undefined ? `, ${cpuName} ${show(figures[cpuName])}` : ""}`);
      }
      if (streams === 1) for (const path of plain) await this.plainThroughput(figures, path, log);
    }
    if (this.cfg.fourPods && paths.includes("hbone")) {
      const name = "throughput.hbone.4pods";
      try {
        const t = await this.target("hbone", "iperf");
        const check = await this.witness("hbone");
        const topo = this.mesh.topo;
        const results = await Promise.all([0, 1, 2, 3].map((i) => this.iperf(topo.pod(0, i), this.serverPods[i]!.ip, t.port, 1)));
        this.details[name] = results;
        await check();
        setFigure(figures, name, round(results.reduce((a, r) => a + r.receivedBps, 0) / 1e9, 3), "Gbit/s");
      } catch (err) {
        setFigure(figures, name, asError(err), "Gbit/s");
      }
      log(`${name}: ${show(figures[name])}`);
    }
  }

  /** 1 stream through one of ztunnel's plaintext paths (compared with the round's raw figure). */
  private async plainThroughput(figures: Figures, path: PlainPathName, log: (s: string) => void): Promise<void> {
    const name = `throughput.${path}.1`;
    try {
      const t = await this.plainTarget(path);
      const check = await this.witness(path);
      const r = await this.iperf(t.from, t.host, t.port, 1);
      this.details[name] = r;
      await check();
      setFigure(figures, name, round(r.receivedBps / 1e9, 3), "Gbit/s");
    } catch (err) {
      setFigure(figures, name, asError(err), "Gbit/s");
    }
    log(`${name}: ${show(figures[name])}`);
  }

  /** 1 KiB request/response round trips over one connection: p50/p99 in µs. */
  async latency(figures: Figures, paths: readonly PathName[], log: (s: string) => void): Promise<void> {
    for (const path of paths) {
      try {
        const t = await this.target(path, "echo");
        const check = await this.witness(path);
        const args = ["latency", t.host, String(t.port), String(this.cfg.roundTrips), "1024", "200", String(this.cfg.latencyWarmupS)];
        const r = await finish(this.mesh.topo.spawnNode(this.client.ns, PINGPONG_TOOL, args), `latency via ${path}`, 120_000);
        if (r.code !== 0) throw new BenchError(`latency tool exited ${r.code}: ${r.stderr.slice(-300)}`);
        const lat = parseLatency(r.stdout);
        this.details[`latency.${path}`] = lat;
        await check();
        setFigure(figures, `latency.${path}.p50`, lat.rttUs.p50, "µs");
        setFigure(figures, `latency.${path}.p99`, lat.rttUs.p99, "µs");
      } catch (err) {
        setFigure(figures, `latency.${path}.p50`, asError(err), "µs");
        setFigure(figures, `latency.${path}.p99`, asError(err), "µs");
      }
      log(`latency.${path}: p50 ${show(figures[`latency.${path}.p50`])}, p99 ${show(figures[`latency.${path}.p99`])}`);
    }
  }

  /** New short connections per second (connect, 1 byte each way, server closes first). */
  async connRate(figures: Figures, paths: readonly PathName[], log: (s: string) => void): Promise<void> {
    for (const path of paths) {
      const name = `connrate.${path}`;
      try {
        const t = await this.target(path, "close");
        const check = await this.witness(path);
        const d = this.cfg.durationS;
        const w = this.cfg.connWarmupS;
        const r = await finish(
          this.mesh.topo.spawnNode(this.client.ns, PINGPONG_TOOL, ["connrate", t.host, String(t.port), String(d), String(this.cfg.connConcurrency), String(w)]),
          `connection rate via ${path}`,
          (w + d + 60) * 1000,
        );
        if (r.code !== 0) throw new BenchError(`connection-rate tool exited ${r.code}: ${r.stderr.slice(-300)}`);
        const cr = parseConnRate(r.stdout);
        this.details[name] = cr;
        await check();
        setFigure(figures, name, cr.perSecond, "conn/s");
      } catch (err) {
        setFigure(figures, name, asError(err), "conn/s");
      }
      log(`${name}: ${show(figures[name])}`);
    }
  }

  /** RSS growth of both ztunnels per idle connection held open through HBONE. */
  async idleMemory(figures: Figures, log: (s: string) => void): Promise<void> {
    const names = ["idle.perConnectionKiB", "idle.clientZtunnelKiB", "idle.serverZtunnelKiB"];
    const sockets: Socket[] = [];
    try {
      await this.target("hbone", "echo");
      const pids = [0, 1].map((i) => this.mesh.node(i).ztunnel?.pid);
      if (pids.some((p) => p === undefined)) throw new BenchError("ztunnel pid unknown");
      await new Promise((r) => setTimeout(r, 2000));
      const before = await Promise.all(pids.map((p) => rssMiB(p!)));
      const n = this.cfg.idleConnections;
      // Spread over every client → server pod pair: each pod's fd share (proxy/budget.ts, from
      // RLIMIT_NOFILE, 20,000 here) holds its part; one pod alone could not hold them all.
      const clients = this.mesh.captured.filter((p) => p.node === 0);
      const pairs = this.serverPods.map((server, i) => ({ client: clients[i]!, server }));
      for (let i = 0; i < n; i += 50) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(50, n - i) }, async (_, j) => {
            const pair = pairs[(i + j) % pairs.length]!;
            const s = await this.mesh.dial(pair.client, pair.server.ip, IDLE_PORT);
            s.write("x");
            await readN(s, 1);
            return s;
          }),
        );
        sockets.push(...batch);
      }
      await new Promise((r) => setTimeout(r, 3000));
      const after = await Promise.all(pids.map((p) => rssMiB(p!)));
      const dump = await this.mesh.configDump(1);
      const kib = (i: number): number => ((after[i]! - before[i]!) * 1024) / n;
      this.details.idle = { connections: n, rssBeforeMiB: before.map((x) => round(x)), rssAfterMiB: after.map((x) => round(x)), serverWorkers: dump.workers };
      setFigure(figures, names[0]!, round(kib(0) + kib(1)), "KiB");
      setFigure(figures, names[1]!, round(kib(0)), "KiB");
      setFigure(figures, names[2]!, round(kib(1)), "KiB");
    } catch (err) {
      for (const name of names) setFigure(figures, name, asError(err), "KiB");
    } finally {
      for (const s of sockets) s.end();
    }
    log(`idle memory per HBONE connection: ${show(figures[names[0]!])} (client ztunnel ${show(figures[names[1]!])}, server ztunnel ${show(figures[names[2]!])})`);
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export function show(f: { value: number; unit: string } | { unavailable: string } | undefined): string {
  if (f === undefined) return "not run";
  return "value" in f ? `${f.value} ${f.unit}` : `unavailable: ${f.unavailable}`;
}
