import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { errorMessage } from "../../shared/errors.js";

// RLIMIT_NOFILE of this process. The soft limit is raised to the hard one at start (Node has
// no setrlimit; util-linux's prlimit sets it on our pid), so the budgets are derived from what
// the kernel will really allow.

export interface NofileLimit {
  readonly soft: number;
  readonly hard: number;
}

export class RlimitError extends Error {}

/** Parses the "Max open files" line of /proc/<pid>/limits ("unlimited" = Infinity). */
export function parseNofile(limits: string): NofileLimit {
  const line = limits.split("\n").find((l) => l.startsWith("Max open files"));
  const m = line === undefined ? null : /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(line);
  if (m === null) throw new RlimitError(`no "Max open files" line in /proc/self/limits`);
  const num = (s: string | undefined): number => (s === "unlimited" ? Infinity : Number(s));
  return { soft: num(m[1]), hard: num(m[2]) };
}

export function readNofile(): NofileLimit {
  return parseNofile(readFileSync("/proc/self/limits", "utf8"));
}

/**
 * Raises the soft limit to the hard one. Returns the limit in effect afterwards and, when
 * raising failed, why (the caller logs it and budgets from the soft limit).
 */
export function raiseNofile(): { limit: NofileLimit; error?: string } {
  const before = readNofile();
  if (before.soft >= before.hard || !Number.isFinite(before.hard)) return { limit: before };
  try {
    execFileSync("prlimit", ["--pid", String(process.pid), `--nofile=${before.hard}:${before.hard}`], { stdio: ["ignore", "ignore", "pipe"], timeout: 5_000 });
  } catch (err) {
    return { limit: before, error: `prlimit failed: ${errorMessage(err)}` };
  }
  return { limit: readNofile() };
}
