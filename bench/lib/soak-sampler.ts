import { readdir } from "node:fs/promises";
import { rssMiB } from "./proc.js";
import { spread } from "./stats.js";

// The soak's resource samples: every few seconds each ztunnel's RSS (VmRSS, all threads) and
// open fd count (/proc/<pid>/fd). Flatness is judged after the warm-up: the median of the last
// quarter of samples against the median of the first quarter, so one burst of connections or
// one pod in the middle of its churn does not decide the verdict, a steady climb does.

export interface Sample {
  /** Seconds since the soak's traffic started. */
  t: number;
  node: number;
  rssMiB: number;
  fds: number;
}

export async function sampleProcess(pid: number, node: number, t: number): Promise<Sample> {
  const [rss, fds] = await Promise.all([rssMiB(pid), readdir(`/proc/${pid}/fd`)]);
  return { t, node, rssMiB: Math.round(rss * 10) / 10, fds: fds.length };
}

export interface Flatness {
  node: number;
  what: "rssMiB" | "fds";
  /** Median of the first quarter of the samples after warm-up. */
  early: number;
  /** Median of the last quarter. */
  late: number;
  /** (late - early) / early, in percent. */
  growthPercent: number;
  min: number;
  max: number;
  samples: number;
  flat: boolean;
}

/** Flatness of one figure of one node's samples taken at or after `warmupSeconds`. */
export function flatness(samples: readonly Sample[], node: number, what: "rssMiB" | "fds", warmupSeconds: number, limitPercent: number): Flatness | undefined {
  const xs = samples.filter((s) => s.node === node && s.t >= warmupSeconds).map((s) => s[what]);
  if (xs.length < 4) return undefined;
  const q = Math.max(1, Math.floor(xs.length / 4));
  const early = spread(xs.slice(0, q)).p50;
  const late = spread(xs.slice(-q)).p50;
  const growthPercent = early === 0 ? 0 : Math.round(((late - early) / early) * 1000) / 10;
  return { node, what, early, late, growthPercent, min: Math.min(...xs), max: Math.max(...xs), samples: xs.length, flat: growthPercent <= limitPercent };
}
