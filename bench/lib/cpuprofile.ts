import { BenchError } from "./errors.js";
import { cell } from "./format.js";

// V8 CPU profiles (`node --cpu-prof`, one .cpuprofile per thread) reduced to what fits in a
// committed file: self time per function and per category, as a share of the thread's busy
// (non-idle) time. Self time: each sample's time delta goes to the function on top of the stack.

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export function parseCpuProfile(text: string, what: string): CpuProfile {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new BenchError(`${what} is not JSON`, { cause: err });
  }
  const p = doc as Partial<CpuProfile>;
  if (!Array.isArray(p.nodes) || !Array.isArray(p.samples) || !Array.isArray(p.timeDeltas) || p.samples.length !== p.timeDeltas.length) {
    throw new BenchError(`${what} is not a V8 CPU profile (nodes, samples and timeDeltas of equal length)`);
  }
  return { nodes: p.nodes, samples: p.samples, timeDeltas: p.timeDeltas, startTime: Number(p.startTime), endTime: Number(p.endTime) };
}

/** Categories in match order: the first whose test accepts a frame takes its time. */
export const CATEGORIES: ReadonlyArray<{ name: string; test: (f: CallFrame) => boolean }> = [
  { name: "GC", test: (f) => f.functionName === "(garbage collector)" },
  { name: "native, outside JS (socket reads incl. TLS decrypt, libuv, V8)", test: (f) => f.functionName === "(program)" },
  { name: "native socket writes (writev/writeBuffer: the syscall with the kernel's TCP/veth path, plus TLS encryption on a TLS socket)", test: (f) => f.url === "" && /^write(v|Buffer|Utf8String|Latin1String|AsciiString|Ucs2String)$/.test(f.functionName) },
  { name: "other native calls from JS (connect, close, setns, postMessage, …)", test: (f) => f.url === "" && !f.functionName.startsWith("(") },
  { name: "TLS (node:tls JS side)", test: (f) => /^node:(_tls_|tls$|internal\/tls)/.test(f.url) },
  { name: "HTTP/2 (node:http2)", test: (f) => /^node:(http2$|internal\/http2)/.test(f.url) },
  { name: "our HTTP/2 layer (proxy/h2)", test: (f) => f.url.includes("/src/ztunnel/proxy/h2/") },
  { name: "our relay (relay, splice, corked writer)", test: (f) => /\/src\/ztunnel\/proxy\/(relay|splice|plain-relay|corked)/.test(f.url) },
  { name: "our code, other (HBONE client/server, workers, telemetry, policy)", test: (f) => f.url.includes("/dist/src/") },
  { name: "Node streams, net, events", test: (f) => /^node:(net$|stream$|events$|internal\/(streams|stream_base_commons|net|event_target))/.test(f.url) },
  { name: "Node timers, microtasks, promises", test: (f) => /^node:(timers$|internal\/(timers|process\/task_queues|process\/promises|async_hooks))/.test(f.url) },
  { name: "other Node internals (module loading, buffers, …)", test: (f) => f.url.startsWith("node:") },
  { name: "other", test: () => true },
];

export interface FunctionShare {
  name: string;
  /** Where it lives: `file:line` (last two path parts), a node: module, or "native". */
  where: string;
  category: string;
  ms: number;
  /** Share of the thread's busy time, percent. */
  pct: number;
}

export interface ThreadSummary {
  /** e.g. "node1 ztunnel, worker 2". */
  label: string;
  wallMs: number;
  busyMs: number;
  categories: Array<{ name: string; ms: number; pct: number }>;
  top: FunctionShare[];
}

function where(f: CallFrame): string {
  if (f.url === "") return "native";
  if (f.url.startsWith("node:")) return f.url;
  const parts = f.url.replace(/^file:\/\//, "").split("/");
  return `${parts.slice(-2).join("/")}:${f.lineNumber + 1}`;
}

export function categoryOf(f: CallFrame): string {
  return CATEGORIES.find((c) => c.test(f))!.name;
}

const r1 = (x: number): number => Math.round(x * 10) / 10;

/**
 * Self time per function and per category; (idle) and the profile's root are left out of "busy".
 * `windowUs`: only samples stamped inside [from, to] count (V8 stamps them with the monotonic
 * clock, the one process.hrtime reads), e.g. the measurement without the process's start-up.
 */
export function summarize(profile: CpuProfile, label: string, topN: number, windowUs?: readonly [number, number]): ThreadSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<ProfileNode, number>();
  let t = profile.startTime;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    if (windowUs !== undefined && (t < windowUs[0] || t > windowUs[1])) return;
    const n = byId.get(id);
    if (n === undefined) return;
    self.set(n, (self.get(n) ?? 0) + dt / 1000);
  });
  // Same function reached from several stacks: one row.
  const fns = new Map<string, { frame: CallFrame; ms: number }>();
  for (const [n, ms] of self) {
    const f = n.callFrame;
    if (f.functionName === "(idle)" || f.functionName === "(root)") continue;
    const key = `${f.functionName}\u0000${f.url}\u0000${f.lineNumber}`;
    const e = fns.get(key) ?? { frame: f, ms: 0 };
    e.ms += ms;
    fns.set(key, e);
  }
  const busyMs = [...fns.values()].reduce((a, e) => a + e.ms, 0);
  const pct = (ms: number): number => (busyMs === 0 ? 0 : r1((100 * ms) / busyMs));
  const cats = new Map<string, number>();
  for (const e of fns.values()) cats.set(categoryOf(e.frame), (cats.get(categoryOf(e.frame)) ?? 0) + e.ms);
  const top = [...fns.values()]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, topN)
    .map((e) => ({ name: e.frame.functionName || "(anonymous)", where: where(e.frame), category: categoryOf(e.frame), ms: r1(e.ms), pct: pct(e.ms) }));
  return {
    label,
    wallMs: r1((Math.min(profile.endTime, windowUs?.[1] ?? Infinity) - Math.max(profile.startTime, windowUs?.[0] ?? -Infinity)) / 1000),
    busyMs: r1(busyMs),
    categories: CATEGORIES.map((c) => ({ name: c.name, ms: r1(cats.get(c.name) ?? 0), pct: pct(cats.get(c.name) ?? 0) })).filter((c) => c.ms > 0),
    top,
  };
}

/** Several threads as one (e.g. every worker of both ztunnels): categories summed. */
export function combine(label: string, threads: readonly ThreadSummary[]): Omit<ThreadSummary, "top"> {
  const busyMs = threads.reduce((a, t) => a + t.busyMs, 0);
  const cats = new Map<string, number>();
  for (const t of threads) for (const c of t.categories) cats.set(c.name, (cats.get(c.name) ?? 0) + c.ms);
  return {
    label,
    wallMs: Math.max(0, ...threads.map((t) => t.wallMs)),
    busyMs: r1(busyMs),
    categories: CATEGORIES.flatMap((c) => {
      const ms = cats.get(c.name) ?? 0;
      return ms > 0 ? [{ name: c.name, ms: r1(ms), pct: busyMs === 0 ? 0 : r1((100 * ms) / busyMs) }] : [];
    }),
  };
}

/** `CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile` → pid and thread (0 = main). */
export function profileFileIds(file: string): { pid: number; thread: number } | undefined {
  const m = /^CPU\.\d+\.\d+\.(\d+)\.(\d+)\.\d+\.cpuprofile$/.exec(file);
  return m === null ? undefined : { pid: Number(m[1]), thread: Number(m[2]) };
}

export function renderCategories(t: Omit<ThreadSummary, "top">): string {
  const rows = [`| category | ms | % of busy |`, "|---|---|---|"];
  for (const c of [...t.categories].sort((a, b) => b.ms - a.ms)) rows.push(`| ${cell(c.name)} | ${c.ms} | ${c.pct} |`);
  return rows.join("\n");
}

export function renderTop(t: ThreadSummary): string {
  const rows = ["| function | where | category | ms | % of busy |", "|---|---|---|---|---|"];
  for (const f of t.top) rows.push(`| \`${cell(f.name)}\` | ${cell(f.where)} | ${cell(f.category)} | ${f.ms} | ${f.pct} |`);
  return rows.join("\n");
}
