import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { BenchError } from "./errors.js";

// CPU time of whole processes (every thread, the exited ones too): /proc/<pid>/stat fields 14
// (utime) and 15 (stime), in clock ticks. A figure per byte moved is steadier than Gbit/s on a
// machine other work shares: it does not depend on how much of the CPU the path was given.

let ticksPerSecond: number | undefined;

async function clockTicks(): Promise<number> {
  if (ticksPerSecond === undefined) {
    const { stdout } = await promisify(execFile)("getconf", ["CLK_TCK"]);
    const n = Number(stdout.trim());
    if (!Number.isInteger(n) || n <= 0) throw new BenchError(`getconf CLK_TCK printed "${stdout.trim()}"`);
    ticksPerSecond = n;
  }
  return ticksPerSecond;
}

/** utime + stime in ticks from the text of /proc/<pid>/stat (comm may hold spaces and parens). */
export function parseStatTicks(stat: string): { utime: number; stime: number } {
  const close = stat.lastIndexOf(")");
  if (close < 0) throw new BenchError(`not a /proc/<pid>/stat line: ${stat.slice(0, 80)}`);
  // After "pid (comm) " the fields start at field 3 (state): utime is field 14, stime 15.
  const rest = stat.slice(close + 2).trim().split(/\s+/);
  const utime = Number(rest[14 - 3]);
  const stime = Number(rest[15 - 3]);
  if (!Number.isInteger(utime) || !Number.isInteger(stime)) throw new BenchError(`no utime/stime in /proc/<pid>/stat: ${stat.slice(0, 120)}`);
  return { utime, stime };
}

/** CPU seconds (user + system) a set of processes used so far, summed. */
export async function cpuSeconds(pids: readonly number[]): Promise<{ user: number; system: number }> {
  const hz = await clockTicks();
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    const t = parseStatTicks(await readFile(`/proc/${pid}/stat`, "utf8"));
    user += t.utime;
    system += t.stime;
  }
  return { user: user / hz, system: system / hz };
}

/** Runs `work` between two samples of `pids`' CPU time: the seconds it cost them. */
export async function cpuDuring<T>(pids: readonly number[], work: () => Promise<T>): Promise<{ result: T; user: number; system: number }> {
  const before = await cpuSeconds(pids);
  const result = await work();
  const after = await cpuSeconds(pids);
  return { result, user: after.user - before.user, system: after.system - before.system };
}
