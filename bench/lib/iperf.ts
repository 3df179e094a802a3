import { BenchError } from "./errors.js";

// iperf3 `-J` output: the client's JSON report. The receiver side's sum is the figure that
// counts (bytes that arrived), the sender's retransmits tell whether the path was lossy.

export interface IperfResult {
  streams: number;
  seconds: number;
  /** Throughput seen by the receiver, bits per second. */
  receivedBps: number;
  sentBps: number;
  retransmits: number;
  /**
   * Bytes that arrived over the whole run, including the omitted first second (-O 1) that the
   * average leaves out: what CPU time sampled around the whole run is divided by.
   */
  totalBytes: number;
  /** CPU use of the client (local) and server (remote) iperf3 processes, percent of one machine. */
  cpuLocal: number;
  cpuRemote: number;
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new BenchError(`iperf3 JSON: ${what} is missing`);
  return v as Record<string, unknown>;
}

function num(o: Record<string, unknown>, key: string, what: string): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isFinite(v)) throw new BenchError(`iperf3 JSON: ${what}.${key} is not a number`);
  return v;
}

export function parseIperfJson(text: string): IperfResult {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new BenchError(`iperf3 printed no JSON report: ${text.slice(0, 200)}`, { cause: err });
  }
  const root = obj(doc, "report");
  if (typeof root.error === "string") throw new BenchError(`iperf3: ${root.error}`);
  const start = obj(root.start, "start");
  const test = obj(start.test_start, "start.test_start");
  const end = obj(root.end, "end");
  const received = obj(end.sum_received, "end.sum_received");
  const sent = obj(end.sum_sent, "end.sum_sent");
  const omitted = Array.isArray(root.intervals)
    ? root.intervals.reduce((sum: number, iv: unknown) => {
        const s = typeof iv === "object" && iv !== null ? (iv as Record<string, unknown>).sum : undefined;
        if (typeof s !== "object" || s === null) return sum;
        const o = s as Record<string, unknown>;
        return o.omitted === true && typeof o.bytes === "number" ? sum + o.bytes : sum;
      }, 0)
    : 0;
  const cpu = typeof end.cpu_utilization_percent === "object" && end.cpu_utilization_percent !== null ? (end.cpu_utilization_percent as Record<string, unknown>) : {};
  return {
    streams: num(test, "num_streams", "start.test_start"),
    seconds: num(received, "seconds", "end.sum_received"),
    receivedBps: num(received, "bits_per_second", "end.sum_received"),
    sentBps: num(sent, "bits_per_second", "end.sum_sent"),
    retransmits: typeof sent.retransmits === "number" ? sent.retransmits : 0,
    totalBytes: num(received, "bytes", "end.sum_received") + omitted,
    cpuLocal: typeof cpu.host_total === "number" ? cpu.host_total : Number.NaN,
    cpuRemote: typeof cpu.remote_total === "number" ? cpu.remote_total : Number.NaN,
  };
}

/** iperf3 client arguments for one run toward host:port. */
export function iperfClientArgs(host: string, port: number, streams: number, seconds: number): string[] {
  // -O 1: leave slow start out of the average; -J: one JSON report on stdout.
  return ["-c", host, "-p", String(port), "-P", String(streams), "-t", String(seconds), "-O", "1", "-J", "--connect-timeout", "5000"];
}
