import { BenchUsageError } from "./errors.js";

// Command line of `npm run bench`, validated once into a fully defaulted object.

/** Measurement groups, in the order they run. */
export const ROWS = ["idle-memory", "throughput", "latency", "connrate", "scale", "zds-ack", "cni-add"] as const;
export type Row = (typeof ROWS)[number];

export interface BenchOptions {
  rows: ReadonlySet<Row>;
  /** Seconds per iperf3 run and per connection-rate run. */
  durationS: number;
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
}

export const USAGE = `usage: npm run bench -- [--only <row,...>] [--duration <s>] [--quick] [--out <dir>]
  rows: ${ROWS.join(", ")}
  --duration  seconds per throughput / connection-rate run (default 10, --quick 3)
  --quick     short runs everywhere (smoke check, numbers are rough)
  --out       results parent directory (default bench/results)`;

export function parseOptions(argv: readonly string[], defaultOutDir: string): BenchOptions {
  let only: string | undefined;
  let duration: string | undefined;
  let quick = false;
  let outDir = defaultOutDir;
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
      case "--duration":
        duration = value();
        break;
      case "--quick":
        quick = true;
        break;
      case "--out":
        outDir = value();
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
  const durationS = duration === undefined ? (quick ? 3 : 10) : Number(duration);
  if (!Number.isFinite(durationS) || durationS < 1 || durationS > 600) {
    throw new BenchUsageError(`--duration must be a number of seconds in 1..600, got "${duration}"`);
  }
  return {
    rows,
    durationS,
    roundTrips: quick ? 1000 : 5000,
    scalePods: quick ? 200 : 1000,
    idleConnections: quick ? 200 : 1000,
    cniRuns: quick ? 20 : 100,
    quick,
    outDir,
  };
}
