// `npm run bench`: the measurement harness of issue 10 (not a test). Builds a 2-node topology
// and measures, in one run, raw TCP / stunnel two-hop / HBONE pod→pod (iperf3 1 and 4 streams,
// 1 KiB request/response latency, new connections per second), idle HBONE connection memory,
// 1,000-pod enrollment, ZDS Add→Ack and CNI ADD; writes JSON, markdown with the targets
// and a PNG chart under bench/results/<timestamp>/ and bench/results/latest.md.
// Needs root. Everything it creates is removed on exit, on failure and on Ctrl-C.
import { optionsOrExit } from "./lib/start.js";
import { mkdir, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { errorMessage } from "../src/shared/errors.js";
import { rootLogger } from "../src/shared/log.js";
import { renderChart } from "./lib/chart.js";
import { cniAdd, cniLoadNote } from "./lib/cni.js";
import { dnsRow } from "./lib/dns.js";
import { Datapath, show, type PathName, type PlainPathName } from "./lib/datapath.js";
import { setFigure, type Figures } from "./lib/figures.js";
import { describeMachine, describeRevision, loadAverage } from "./lib/machine.js";
import { compareSideArgs, parseOptions, type BenchOptions, type Row } from "./lib/options.js";
import { runCompare } from "./compare-run.js";
import { mergeRounds, roundRatios } from "./lib/rounds.js";
import { evaluate, renderMarkdown, TARGETS, type ReportInput } from "./lib/report.js";
import { scaleRow } from "./lib/scale.js";
import { Teardown, withTimeout } from "./lib/teardown.js";
import { runZdsAddAck } from "./lib/zds.js";

const REPO = join(import.meta.dirname, "..", "..");
const TUNNEL_PATHS: readonly PathName[] = ["raw", "stunnel", "nodetls", "nodetcp", "hbone"];
const PLAIN_PATHS: readonly PlainPathName[] = ["passthrough", "inboundPlain"];
const CONN_CONCURRENCY = 8;
/**
 * Connections before the connection rate counts: a freshly started ztunnel's per-connection
 * code (accept, route, CONNECT, relay set-up) is still being compiled during its first seconds
 * of traffic, so its rate climbs over them (a production ztunnel runs for days). The same
 * warm-up for every path, as iperf's -O 1 and the latency row's warm-up round trips.
 */
const CONN_WARMUP_S = 3;
/**
 * Round trips before latency samples count, beyond the first 200: a fresh ztunnel worker runs
 * the per-message path unoptimized for its first thousands of round trips. The same for every path.
 */
const LATENCY_WARMUP_S = 2;

rootLogger().level = "warn";

function log(s: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** A row abandoned at its deadline: each figure it had not set yet says why it is missing. */
function abandoned(got: Figures, names: readonly string[]): (e: unknown) => void {
  return (e) => {
    log(errorMessage(e));
    for (const n of names) if (got[n] === undefined) setFigure(got, n, asError(e), "");
  };
}

async function datapathRows(opts: BenchOptions, figures: Figures, rounds: Figures[], details: Record<string, unknown>, teardown: Teardown): Promise<void> {
  const want = (r: Row): boolean => opts.rows.has(r);
  const paths = TUNNEL_PATHS.filter((p) => opts.paths.has(p));
  const plain = want("throughput") ? PLAIN_PATHS.filter((p) => opts.paths.has(p)) : [];
  const dp = await Datapath.create(
    { durationS: opts.durationS, roundTrips: opts.roundTrips, connConcurrency: CONN_CONCURRENCY, connWarmupS: CONN_WARMUP_S, latencyWarmupS: LATENCY_WARMUP_S, idleConnections: opts.idleConnections, fourPods: want("throughput") && opts.paths.has("hbone"), plainPaths: plain.length > 0, floorPaths: paths.filter((p) => p === "nodetls" || p === "nodetcp") },
    teardown,
    log,
  );
  details.datapath = dp.details;
  const roundDetails: Array<Record<string, unknown>> = [];
  details.datapathRounds = roundDetails;
  const bound = (rowS: number): number => rowS * 1000;
  const d = opts.durationS;
  // Idle memory first: a fresh ztunnel has no garbage from the bulk rows for GC to return meanwhile.
  if (want("idle-memory")) await withTimeout("idle-memory row", bound(120), dp.idleMemory(figures, log)).catch((e: unknown) => log(errorMessage(e)));
  const throughputNames = [
    ...paths.flatMap((p) => [`throughput.${p}.1`, `throughput.${p}.4`, ...(p === "raw" ? [] : [`cpu.${p}PerGiB`, `cpu.${p}PerGiB4Streams`])]),
    ...(paths.includes("hbone") ? ["throughput.hbone.4pods"] : []),
    ...plain.map((p) => `throughput.${p}.1`),
  ];
  // The rounds' span on the monotonic clock V8 stamps profile samples with (bench:profile keeps
  // only the samples inside it, leaving ztunnel start-up and the idle row out).
  const fromUs = Number(process.hrtime.bigint() / 1000n);
  for (let r = 1; r <= opts.rounds; r++) {
    if (opts.rounds > 1) log(`pod-to-pod round ${r} of ${opts.rounds}`);
    const got: Figures = {};
    // The machine as this round starts (other work included): a per-round load record.
    setFigure(got, "machine.load1AtRoundStart", loadAverage()[0], "load");
    if (want("throughput")) await withTimeout("throughput row", bound(11 * (d + 35)), dp.throughput(got, paths, plain, log)).catch(abandoned(got, throughputNames));
    if (want("latency")) await withTimeout("latency row", bound(3 * 130), dp.latency(got, paths, log)).catch(abandoned(got, paths.flatMap((p) => [`latency.${p}.p50`, `latency.${p}.p99`])));
    if (want("connrate")) await withTimeout("connrate row", bound(3 * (d + 65)), dp.connRate(got, paths, log)).catch(abandoned(got, paths.map((p) => `connrate.${p}`)));
    rounds.push(got);
    // The row details (iperf3 summaries, CPU samples, latency spreads) of this round; the next
    // round overwrites dp.details, so keep a copy.
    roundDetails.push({ ...dp.details });
  }
  details.roundsWindowUs = [fromUs, Number(process.hrtime.bigint() / 1000n)];
  const merged = mergeRounds(rounds);
  Object.assign(figures, merged.figures);
  details.rounds = { count: opts.rounds, perRound: merged.perRound };
  await teardown.runOne("datapath mesh (ztunnels, stunnel, iperf3, netns)");
}

async function measure(opts: BenchOptions, figures: Figures, rounds: Figures[], details: Record<string, unknown>, notes: string[], teardown: Teardown): Promise<void> {
  if (["throughput", "latency", "connrate", "idle-memory"].some((r) => opts.rows.has(r as Row))) {
    try {
      await datapathRows(opts, figures, rounds, details, teardown);
    } catch (err) {
      notes.push(`pod-to-pod rows failed: ${errorMessage(err).split("\n")[0]}`);
      log(`pod-to-pod rows failed: ${errorMessage(err)}`);
    }
  }
  if (opts.rows.has("scale")) {
    try {
      details.scale = await withTimeout("scale row", 600_000, scaleRow(opts.scalePods, figures, teardown, log));
    } catch (err) {
      for (const f of ["scale.enrollSeconds", "scale.rssMiB"]) if (figures[f] === undefined) setFigure(figures, f, asError(err), f.endsWith("MiB") ? "MiB" : "s");
      log(`scale row failed: ${errorMessage(err)}`);
    }
    // The scale row's topology and netns go now, not at exit: later rows measure a quiet node.
    for (const step of ["scale node netns handle", "scale ZDS server", "scale temp dir", "scale pod netns", "scale topology"]) await teardown.runOne(step);
  }
  if (opts.rows.has("zds-ack")) {
    try {
      const r = await runZdsAddAck(1000);
      details.zdsAddAck = r;
      setFigure(figures, "zds.addAckP99Ms", r.p99Us / 1000, "ms");
      setFigure(figures, "zds.addAckP50Ms", r.p50Us / 1000, "ms");
    } catch (err) {
      setFigure(figures, "zds.addAckP99Ms", asError(err), "ms");
    }
    log(`zds Add→Ack p99: ${show(figures["zds.addAckP99Ms"])}`);
  }
  if (opts.rows.has("dns")) {
    try {
      details.dns = await withTimeout("dns row", 120_000 + opts.durationS * 2_000, dnsRow({ durationS: opts.durationS, meshQueries: opts.quick ? 1_000 : 5_000 }, figures, teardown, log));
    } catch (err) {
      setFigure(figures, "dns.proxyRatio", asError(err), "x");
      log(`dns row failed: ${errorMessage(err)}`);
    }
    log(`DNS through the proxy / direct: ${show(figures["dns.proxyRatio"])}, mesh-name p99 ${show(figures["dns.meshP99Us"])}`);
  }
  if (opts.rows.has("cni-add")) {
    try {
      const s = await cniAdd(opts.cniRuns);
      details.cniAdd = s;
      setFigure(figures, "cni.addP99Ms", s.p99, "ms");
      setFigure(figures, "cni.addP50Ms", s.p50, "ms");
      setFigure(figures, "cni.addLoadedP99Ms", s.loaded.p99, "ms");
      setFigure(figures, "cni.addLoadedP50Ms", s.loaded.p50, "ms");
      setFigure(figures, "cni.nodeStartP99Ms", s.nodeStart.p99, "ms");
      setFigure(figures, "cni.nodeStartLoadedP99Ms", s.nodeStart.loaded.p99, "ms");
    } catch (err) {
      for (const f of ["cni.addP99Ms", "cni.addP50Ms", "cni.addLoadedP99Ms"]) setFigure(figures, f, asError(err), "ms");
    }
    log(`CNI ADD p99: ${show(figures["cni.addP99Ms"])}, loaded ${show(figures["cni.addLoadedP99Ms"])}; node -e 0 p99 ${show(figures["cni.nodeStartP99Ms"])}, loaded ${show(figures["cni.nodeStartLoadedP99Ms"])}`);
  }
}

async function main(): Promise<number> {
  const opts = optionsOrExit("bench", () => parseOptions(process.argv.slice(2), join(REPO, "bench", "results")));
  if (typeof opts === "number") return opts;
  if (opts.compare !== undefined) {
    try {
      return await runCompare(REPO, { ref: opts.compare, args: compareSideArgs(process.argv.slice(2)), rounds: opts.rounds, outDir: opts.outDir, needsCni: opts.rows.has("cni-add") }, log);
    } catch (err) {
      process.stderr.write(`bench --compare: ${errorMessage(err)}
`);
      return 1;
    }
  }
  const teardown = new Teardown();
  let interrupted = false;
  const stop = (signal: NodeJS.Signals): void => {
    interrupted = true;
    log(`${signal}: tearing down (a second ${signal} exits at once; the next run sweeps what is left)`);
    void teardown.run().then((errors) => {
      for (const e of errors) log(`cleanup: ${e}`);
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  // A row abandoned by its timeout may still reject later, against torn-down objects.
  process.on("unhandledRejection", (err) => log(`late failure (ignored): ${errorMessage(err)}`));

  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
  const machine = await describeMachine();
  const revision = await describeRevision(REPO);
  log(`machine: ${machine.cpuModel}, ${machine.cores} cores, kernel ${machine.kernel}, Node ${machine.node}, load ${machine.loadAvgStart.map((x) => x.toFixed(2)).join(" ")}`);
  const figures: Figures = {};
  const rounds: Figures[] = [];
  const details: Record<string, unknown> = {};
  const notes: string[] = [];
  try {
    await measure(opts, figures, rounds, details, notes, teardown);
  } finally {
    const errors = await teardown.run();
    for (const e of errors) {
      log(`cleanup: ${e}`);
      notes.push(`cleanup problem: ${e}`);
    }
  }
  if (interrupted) return 130; // no partial results; the signal handler exits after cleanup
  machine.loadAvgEnd = loadAverage();

  const ran = (...rows: Row[]): boolean => rows.some((r) => opts.rows.has(r));
  notes.push(
    `Absolute numbers move with machine load (${machine.cores} cores; the load average above: the start figure is the machine before this run, the bench's own processes add to the end figure); the two figures of every ratio were measured back to back, in every round.`,
  );
  if (ran("throughput", "latency", "connrate", "idle-memory")) {
    notes.push(
      "Pod-to-pod: 2 nodes, client pod on node 0, server pod on node 1 (routed veth, DESIGN §11); one ztunnel process per node with 2 worker threads, LOG_LEVEL=warn (no access records); the bench plays the node agent (in-pod rules, ZDS).",
      "stunnel4: TLS 1.3 only, TLS_AES_128_GCM_SHA256, ECDSA P-256 certificates made per run, mutual verification, TCP_NODELAY on both sockets. HBONE offers TLS_AES_128_GCM_SHA256 then TLS_AES_256_GCM_SHA384 (the server's order wins), so both paths run AES-128-GCM.",
    );
    if (opts.paths.has("nodetls") || opts.paths.has("nodetcp")) {
      notes.push(
        "Node floor (bench/floor/relay.ts, not ztunnel): one Node process per node laid out like stunnel, one event loop each, run with ztunnel's node flags, plain `pipe()` both ways, TCP_NODELAY; nodetls = stunnel's TLS (1.3, TLS_AES_128_GCM_SHA256, its certificates, chain verified both ways) between the nodes, nodetcp = plain TCP both hops. No HTTP/2, no policy, no in-pod sockets: what Node's own net/TLS machinery costs on this path, the least a Node data path pays.",
      );
    }
  }
  if (ran("throughput", "latency", "connrate") && opts.rounds > 1) notes.push(`Throughput, CPU per GiB, latency and connection rate: ${opts.rounds} rounds (every path back to back in each); every figure is the median of its rounds and every ratio target the median of the rounds' own ratios; "Every round" lists each round (also in results.json: rounds, details.rounds).`);
  if (ran("throughput")) {
    notes.push(
      "throughput.hbone.4 = iperf3 -P 4 from one pod (streams share pooled HBONE connections per worker); throughput.hbone.4pods = 4 client pods each sending 1 stream to its own server pod (separate HBONE connections).",
      "CPU per GiB: utime + stime of both tunnel processes of a path (stunnel4, Node floor relays, ztunnels; every thread; /proc/<pid>/stat, CLK_TCK ticks) sampled before and after each 1-stream and 4-stream iperf3 run (cpu.<path>PerGiB, cpu.<path>PerGiB4Streams), divided by the GiB that arrived over the whole run (the omitted first second included); the CPU seconds, GiB and iperf3's own CPU (-J cpu_utilization_percent) of each round are in results.json (details.datapathRounds).",
      "Plaintext paths (1 stream, back to back with throughput.raw.1, capture on): throughput.passthrough.1 = captured client pod (node 0) → an uncaptured pod on node 1, through node 0's ztunnel outbound passthrough; throughput.inboundPlain.1 = an uncaptured pod on node 0 → the captured server pod, through node 1's ztunnel inbound plaintext listener (15006). Each counts only if that ztunnel's connection counter moved.",
    );
  }
  const share = (details.datapath as { fdShare?: { nofile: number; podsPerNode: number; perPodPerWorkerPerDirection: number } } | undefined)?.fdShare;
  if (share !== undefined) {
    notes.push(
      `fd budget: the ztunnels ran with RLIMIT_NOFILE ${share.nofile} (the hard limit of this sandbox; ztunnel raises soft to hard and prlimit cannot raise the hard one here), so with ${share.podsPerNode} captured pods per node each pod may hold ${share.perPodPerWorkerPerDirection} proxied connections per worker and direction (src/ztunnel/proxy/budget.ts); every row stays inside that (idle memory spreads its connections over the ${share.podsPerNode} pod pairs, connection rate keeps ${CONN_CONCURRENCY} open at a time).`,
    );
  }
  if (ran("latency", "connrate")) notes.push(`Latency: ${opts.roundTrips} round trips of 1 KiB over one connection after 200 warm-up and ${LATENCY_WARMUP_S} s more of the same; connection rate: ${CONN_CONCURRENCY} concurrent loops of connect / 1 byte each way / server closes first, counted after ${CONN_WARMUP_S} s of the same as warm-up, tcp_tw_reuse=1 in the pods.`);
  if (ran("idle-memory")) notes.push(`Idle memory: ${opts.idleConnections} connections client pod → server pod through HBONE, each after one byte each way; RSS growth of both ztunnels divided by the count.`);
  if (ran("scale")) notes.push(`Scale: ${opts.scalePods} bare pod netns, each with its own service account (one certificate per pod), Adds one by one; enrollSeconds = first Add to last Ack (every Ack waits for the listeners on both workers); config_dump confirmed 6 listeners per pod.`);
  if (ran("dns")) notes.push("DNS: UDP queries from a captured pod, 32 in flight, through ztunnel's proxy to an upstream of ours (dns-packet, in another pod's netns, same process as the load) vs straight to it with capture off; the mesh-name p99 is sequential queries answered from ztunnel's state. The per-pod rate limit is off (DNS_POD_QUERY_RATE=0).");
  if (ran("cni-add")) notes.push(`CNI ADD: dist/cni-plugin/ambient-cni exec'd ${opts.cniRuns} times with CNI_* env against a running plugin event server that answers at once (the agent's rules and ZDS work are in the other rows); the loaded figures run the same ADDs while ${cniLoadNote()}. Each ADD is followed by a \`node -e 0\` of the same Node binary (cni.nodeStart*: Node's own start-up, the floor of a plugin built on Node, under the same load).`);
  const dir = join(opts.outDir, stamp);
  await mkdir(dir, { recursive: true });
  let chart: string | undefined;
  try {
    chart = await renderChart(dir, figures, `ambient node data plane, ${stamp}, load ${machine.loadAvgStart[0].toFixed(1)} on ${machine.cores} cores`);
  } catch (err) {
    notes.push(`chart not rendered: ${errorMessage(err).split("\n")[0]} (apt-get install -y gnuplot-nox)`);
  }
  const report: ReportInput = { startedAt: startedAt.toISOString(), revision, durationS: opts.durationS, quick: opts.quick, machine, figures, rounds, notes, ...(chart ? { chart } : {}) };
  const evaluations = TARGETS.map((t) => evaluate(figures, t, rounds));
  const json = {
    ...report,
    options: { ...opts, rows: [...opts.rows] },
    targets: evaluations.map((e) => ({ ...e.target, value: e.value, verdict: e.verdict, reason: e.reason, rounds: e.rounds, perRound: e.target.reference === undefined ? undefined : roundRatios(rounds, e.target.figure, e.target.reference) })),
    details,
  };
  await writeFile(join(dir, "results.json"), `${JSON.stringify(json, null, 2)}\n`);
  const md = renderMarkdown(report);
  await writeFile(join(dir, "results.md"), md);
  const latest = renderMarkdown({ ...report, ...(chart ? { chart: `${stamp}/${chart}` } : {}) });
  await writeFile(join(opts.outDir, "latest.md"), latest.replace(/^# Bench results/, `# Bench results (latest: ${stamp}/)`));
  process.stdout.write(`${md}\n`);
  log(`results in ${relative(process.cwd(), dir) || dir}`);
  return 0;
}

process.exitCode = await main();
