import { BenchUsageError } from "./errors.js";

// Command line of `npm run bench`, validated once into a fully defaulted object.

/** Measurement groups, in the order they run. */
export const ROWS = ["idle-memory", "throughput", "latency", "connrate", "scale", "zds-ack", "cni-add", "dns"] as const;
export type Row = (typeof ROWS)[number];

/**
 * Paths of the pod-to-pod rows: nodetls and nodetcp are the Node floor (bench/floor); the last
 * two are plaintext through ztunnel (throughput only).
 */
export const PATHS = ["raw", "stunnel", "nodetls", "nodetcp", "hbone", "passthrough", "inboundPlain"] as const;
export type BenchPath = (typeof PATHS)[number];

export interface BenchOptions {
  rows: ReadonlySet<Row>;
  /** Paths the pod-to-pod rows measure (e.g. only hbone under a profiler). */
  paths: ReadonlySet<BenchPath>;
  /** Seconds per iperf3 run and per connection-rate run. */
  durationS: number;
  /** Rounds of the throughput, latency and connection-rate rows; each figure is the median. */
  rounds: number;
  /** Round trips per latency run. */
  roundTrips: number;
  /** Pods enrolled in the scale row. */
  scalePods: number;
  /** Idle HBONE connections opened for the memory row. */
  idleConnections: number;
  /** CNI ADD invocations. */
  cniRuns: number;
  quick: boolean;
  /** Parent of the per-run result directory. */
  outDir: string;
  /** --compare: the git ref of the baseline build to run against this one. */
  compare?: string;
}

export const USAGE = `usage: npm run bench -- [--only <row,...>] [--paths <path,...>] [--duration <s>] [--rounds <n>] [--quick] [--out <dir>] [--compare <git ref>]
  rows: ${ROWS.join(", ")}
  --paths     paths of the pod-to-pod rows (default all: ${PATHS.join(", ")}); ratios need both sides
  --duration  seconds per throughput / connection-rate run (default 10, --quick 3)
  --rounds    rounds of the throughput / latency / connection-rate rows, median reported (default 3, --quick 1)
  --quick     short runs everywhere (smoke check, numbers are rough)
  --out       results parent directory (default bench/results)
  --compare   build <git ref> in a temporary worktree and run it and this build round by round
              (baseline first), then print each figure's ratio this / baseline`;

export function parseOptions(argv: readonly string[], defaultOutDir: string): BenchOptions {
  let only: string | undefined;
  let pathsArg: string | undefined;
  let duration: string | undefined;
  let roundsArg: string | undefined;
  let quick = false;
  let outDir = defaultOutDir;
  let compare: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === "") throw new BenchUsageError(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    switch (flag) {
      case "--only":
        only = value();
        break;
      case "--paths":
        pathsArg = value();
        break;
      case "--duration":
        duration = value();
        break;
      case "--rounds":
        roundsArg = value();
        break;
      case "--quick":
        quick = true;
        break;
      case "--out":
        outDir = value();
        break;
      case "--compare":
        compare = value();
        break;
      case "--help":
      case "-h":
        throw new BenchUsageError(USAGE);
      default:
        throw new BenchUsageError(`unknown argument "${arg}"\n${USAGE}`);
    }
  }
  const rows = new Set<Row>();
  if (only === undefined) ROWS.forEach((r) => rows.add(r));
  else {
    for (const name of only.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
      if (!(ROWS as readonly string[]).includes(name)) throw new BenchUsageError(`--only: unknown row "${name}" (rows: ${ROWS.join(", ")})`);
      rows.add(name as Row);
    }
    if (rows.size === 0) throw new BenchUsageError(`--only needs at least one row (rows: ${ROWS.join(", ")})`);
  }
  const paths = new Set<BenchPath>(pathsArg === undefined ? PATHS : []);
  for (const name of (pathsArg ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    if (!(PATHS as readonly string[]).includes(name)) throw new BenchUsageError(`--paths: unknown path "${name}" (paths: ${PATHS.join(", ")})`);
    paths.add(name as BenchPath);
  }
  if (paths.size === 0) throw new BenchUsageError(`--paths needs at least one path (paths: ${PATHS.join(", ")})`);
  const durationS = duration === undefined ? (quick ? 3 : 10) : Number(duration);
  if (!Number.isFinite(durationS) || durationS < 1 || durationS > 600) {
    throw new BenchUsageError(`--duration must be a number of seconds in 1..600, got "${duration}"`);
  }
  const rounds = roundsArg === undefined ? (quick ? 1 : 3) : Number(roundsArg);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) {
    throw new BenchUsageError(`--rounds must be a whole number in 1..20, got "${roundsArg}"`);
  }
  return {
    rows,
    paths,
    durationS,
    rounds,
    roundTrips: quick ? 1000 : 5000,
    scalePods: quick ? 200 : 1000,
    idleConnections: quick ? 200 : 1000,
    cniRuns: quick ? 20 : 100,
    quick,
    outDir,
    ...(compare !== undefined ? { compare } : {}),
  };
}

/** The arguments each side of --compare runs with: the user's, less what the comparison owns. */
export function compareSideArgs(argv: readonly string[]): string[] {
  const owned = new Set(["--compare", "--rounds", "--out"]);
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const flag = arg.includes("=") ? arg.slice(0, arg.indexOf("=")) : arg;
    if (owned.has(flag)) {
      if (!arg.includes("=")) i++; // its value
      continue;
    }
    out.push(arg);
  }
  return out;
}
