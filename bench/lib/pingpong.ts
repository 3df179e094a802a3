import { BenchError } from "./errors.js";
import { round, spread, type Spread } from "./stats.js";

// Parsing of the ping-pong tool's one-line JSON reports (bench/lib/pingpong-tool.ts).

export interface LatencyResult {
  size: number;
  /** Round-trip time in microseconds. */
  rttUs: Spread;
}

export interface ConnRateResult {
  connections: number;
  errors: number;
  lastError: string;
  seconds: number;
  concurrency: number;
  perSecond: number;
  /** Connect + one-byte exchange + close, microseconds. */
  connUs: Spread;
}

function lastJsonLine(stdout: string): Record<string, unknown> {
  const line = stdout.trim().split("\n").filter((l) => l.startsWith("{")).at(-1);
  if (line === undefined) throw new BenchError(`ping-pong tool printed no report: ${stdout.slice(0, 200)}`);
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch (err) {
    throw new BenchError(`ping-pong tool report is not JSON: ${line.slice(0, 200)}`, { cause: err });
  }
}

function numbers(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== "number")) throw new BenchError(`ping-pong report: ${what} must be an array of numbers`);
  return v as number[];
}

function roundSpread(s: Spread): Spread {
  return { count: s.count, p50: round(s.p50), p90: round(s.p90), p99: round(s.p99), max: round(s.max), mean: round(s.mean) };
}

export function parseLatency(stdout: string): LatencyResult {
  const r = lastJsonLine(stdout);
  if (r.kind !== "latency") throw new BenchError(`ping-pong report: expected kind latency, got ${String(r.kind)}`);
  const samples = numbers(r.samplesUs, "samplesUs");
  if (samples.length === 0) throw new BenchError("ping-pong report: no latency samples");
  return { size: Number(r.size), rttUs: roundSpread(spread(samples)) };
}

export function parseConnRate(stdout: string): ConnRateResult {
  const r = lastJsonLine(stdout);
  if (r.kind !== "connrate") throw new BenchError(`ping-pong report: expected kind connrate, got ${String(r.kind)}`);
  const seconds = Number(r.seconds);
  const connections = Number(r.connections);
  if (!(seconds > 0) || !Number.isInteger(connections)) throw new BenchError("ping-pong report: connrate needs seconds > 0 and an integer connection count");
  if (connections === 0) throw new BenchError(`no connection completed (${String(r.errors)} errors, last: ${String(r.lastError)})`);
  return {
    connections,
    errors: Number(r.errors),
    lastError: String(r.lastError ?? ""),
    seconds: round(seconds, 3),
    concurrency: Number(r.concurrency),
    perSecond: round(connections / seconds),
    connUs: roundSpread(spread(numbers(r.samplesUs, "samplesUs"))),
  };
}
