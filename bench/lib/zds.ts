import { spawn } from "node:child_process";
import { join } from "node:path";
import { BenchError } from "./errors.js";
import { finish } from "./proc.js";

// ZDS Add→Ack: runs bench/zds-add-ack (another engineer's bench; run as-is) and reads its text.

export const ZDS_BENCH = join(import.meta.dirname, "..", "zds-add-ack.js");

export interface ZdsAckResult {
  count: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  addsPerSecond: number;
}

/** Parses "p50 123 µs  p90 … p99 … max …" and "total … ms, N Adds/s" from zds-add-ack's output. */
export function parseZdsAddAck(stdout: string): ZdsAckResult {
  const count = /(\d+) Adds through/.exec(stdout);
  const m = /p50 (\d+) µs\s+p90 (\d+) µs\s+p99 (\d+) µs\s+max (\d+) µs/.exec(stdout);
  const rate = /(\d+) Adds\/s/.exec(stdout);
  if (count === null || m === null || rate === null) throw new BenchError(`zds-add-ack output not understood: ${stdout.slice(0, 300)}`);
  return { count: Number(count[1]), p50Us: Number(m[1]), p90Us: Number(m[2]), p99Us: Number(m[3]), maxUs: Number(m[4]), addsPerSecond: Number(rate[1]) };
}

export async function runZdsAddAck(count: number): Promise<ZdsAckResult> {
  const child = spawn(process.execPath, [ZDS_BENCH, String(count)], { stdio: ["ignore", "pipe", "pipe"] });
  const r = await finish(child, "bench/zds-add-ack", 120_000);
  if (r.code !== 0) throw new BenchError(`bench/zds-add-ack exited ${r.code}: ${r.stderr.slice(-300)}`);
  return parseZdsAddAck(r.stdout);
}
