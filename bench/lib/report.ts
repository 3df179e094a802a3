import { isMeasured, type Figure, type Figures } from "./figures.js";
import { cell, fmt, fmtAgainst } from "./format.js";
import { renderRoundsTables } from "./report-rounds.js";
import { medianRatio } from "./rounds.js";

// The issue's targets as data, evaluated against a run's figures, and the markdown report.

export interface Target {
  label: string;
  /** Figure under test. */
  figure: string;
  /** Reference figure (the target is on figure / reference); absent = absolute target. */
  reference?: string;
  op: ">=" | "<=";
  goal: number;
}

/** Issue 20's targets (scale and ZDS goals kept from issue 10). */
export const TARGETS: readonly Target[] = [
  { label: "throughput, 1 stream: HBONE / stunnel", figure: "throughput.hbone.1", reference: "throughput.stunnel.1", op: ">=", goal: 1.25 },
  { label: "throughput, 4 streams from one pod (pooled): HBONE / stunnel", figure: "throughput.hbone.4", reference: "throughput.stunnel.4", op: ">=", goal: 1.0 },
  { label: "throughput, 4 pods x 1 stream: HBONE / stunnel 4 streams", figure: "throughput.hbone.4pods", reference: "throughput.stunnel.4", op: ">=", goal: 1.0 },
  { label: "CPU seconds per GiB moved (1 stream): both ztunnels / both stunnels", figure: "cpu.hbonePerGiB", reference: "cpu.stunnelPerGiB", op: "<=", goal: 0.9 },
  { label: "1 KiB request/response p50: HBONE / stunnel", figure: "latency.hbone.p50", reference: "latency.stunnel.p50", op: "<=", goal: 1.15 },
  { label: "1 KiB request/response p99: HBONE / stunnel", figure: "latency.hbone.p99", reference: "latency.stunnel.p99", op: "<=", goal: 1.5 },
  { label: "new connections/s: HBONE / raw TCP", figure: "connrate.hbone", reference: "connrate.raw", op: ">=", goal: 0.35 },
  { label: "throughput, 1 stream, captured → uncaptured (passthrough) / raw", figure: "throughput.passthrough.1", reference: "throughput.raw.1", op: ">=", goal: 0.8 },
  { label: "throughput, 1 stream, uncaptured → captured (inbound plaintext, 15006) / raw", figure: "throughput.inboundPlain.1", reference: "throughput.raw.1", op: ">=", goal: 0.8 },
  { label: "memory per idle HBONE connection, both ztunnels", figure: "idle.perConnectionKiB", op: "<=", goal: 32 },
  { label: "1,000 pods enrolled, all listeners up on every worker", figure: "scale.enrollSeconds", op: "<=", goal: 10 },
  { label: "ztunnel RSS with 1,000 pods", figure: "scale.rssMiB", op: "<=", goal: 300 },
  { label: "ZDS Add→Ack p99 (bench/zds-add-ack)", figure: "zds.addAckP99Ms", op: "<=", goal: 20 },
  // "with a warm agent, on a loaded machine": the row's second pass, one spinning process per core.
  { label: "CNI ADD exec-to-exit p99, warm agent, loaded machine", figure: "cni.addLoadedP99Ms", op: "<=", goal: 60 },
];

/** Ratios reported without a target (context for the targets above). */
export const INFO_RATIOS: ReadonlyArray<{ label: string; figure: string; reference: string }> = [
  { label: "throughput, 1 stream: HBONE / raw", figure: "throughput.hbone.1", reference: "throughput.raw.1" },
  { label: "throughput, 4 streams: HBONE / raw", figure: "throughput.hbone.4", reference: "throughput.raw.4" },
  { label: "throughput, 1 stream: stunnel / raw", figure: "throughput.stunnel.1", reference: "throughput.raw.1" },
  { label: "throughput, 4 streams: stunnel / raw", figure: "throughput.stunnel.4", reference: "throughput.raw.4" },
  { label: "latency p50: HBONE / raw", figure: "latency.hbone.p50", reference: "latency.raw.p50" },
  { label: "latency p99: HBONE / raw", figure: "latency.hbone.p99", reference: "latency.raw.p99" },
  { label: "new connections/s: stunnel / raw", figure: "connrate.stunnel", reference: "connrate.raw" },
  { label: "new connections/s: HBONE / stunnel", figure: "connrate.hbone", reference: "connrate.stunnel" },
  // The Node floor (bench/floor): what Node's net/TLS costs alone, and how far HBONE is above it.
  { label: "throughput, 1 stream: Node TLS floor / stunnel", figure: "throughput.nodetls.1", reference: "throughput.stunnel.1" },
  { label: "throughput, 4 streams: Node TLS floor / stunnel", figure: "throughput.nodetls.4", reference: "throughput.stunnel.4" },
  { label: "CPU seconds per GiB (1 stream): Node TLS floor / stunnel", figure: "cpu.nodetlsPerGiB", reference: "cpu.stunnelPerGiB" },
  { label: "CPU seconds per GiB (4 streams): both ztunnels / both stunnels", figure: "cpu.hbonePerGiB4Streams", reference: "cpu.stunnelPerGiB4Streams" },
  { label: "CPU seconds per GiB (4 streams): Node TLS floor / stunnel", figure: "cpu.nodetlsPerGiB4Streams", reference: "cpu.stunnelPerGiB4Streams" },
  { label: "latency p50: Node TLS floor / stunnel", figure: "latency.nodetls.p50", reference: "latency.stunnel.p50" },
  { label: "latency p99: Node TLS floor / stunnel", figure: "latency.nodetls.p99", reference: "latency.stunnel.p99" },
  { label: "latency p50: HBONE / Node TLS floor", figure: "latency.hbone.p50", reference: "latency.nodetls.p50" },
  { label: "latency p50: Node TCP floor / raw", figure: "latency.nodetcp.p50", reference: "latency.raw.p50" },
  { label: "new connections/s: Node TCP floor / raw", figure: "connrate.nodetcp", reference: "connrate.raw" },
  { label: "new connections/s: Node TLS floor / raw", figure: "connrate.nodetls", reference: "connrate.raw" },
  { label: "new connections/s: HBONE / Node TCP floor", figure: "connrate.hbone", reference: "connrate.nodetcp" },
  { label: "CNI ADD exec-to-exit p99, loaded: plugin / `node -e 0` (Node's own start-up)", figure: "cni.addLoadedP99Ms", reference: "cni.nodeStartLoadedP99Ms" },
];

export type Verdict = "PASS" | "MISS" | "n/a";

export interface Evaluation {
  target: Target;
  /** figure / reference, or the figure itself for an absolute target. */
  value: number | undefined;
  verdict: Verdict;
  /** Why there is no verdict (a figure was not measured). */
  reason?: string;
  /** Rounds whose own ratio went into the value (its median); absent = ratio of the figures. */
  rounds?: number;
}

function why(name: string, f: Figure | undefined): string {
  if (f === undefined) return `${name} not measured in this run`;
  return "unavailable" in f ? `${name} unavailable: ${f.unavailable}` : `${name} is not a number`;
}

export function ratio(figures: Figures, figure: string, reference: string): number | undefined {
  const a = figures[figure];
  const b = figures[reference];
  if (!isMeasured(a) || !isMeasured(b) || b.value === 0) return undefined;
  return a.value / b.value;
}

/**
 * A ratio target's value is the median of the per-round ratios when the run had rounds (each
 * round measured figure and reference back to back); otherwise figure / reference.
 */
export function evaluate(figures: Figures, target: Target, rounds: readonly Figures[] = []): Evaluation {
  const f = figures[target.figure];
  if (!isMeasured(f)) return { target, value: undefined, verdict: "n/a", reason: why(target.figure, f) };
  const verdict = (value: number): Verdict => ((target.op === ">=" ? value >= target.goal : value <= target.goal) ? "PASS" : "MISS");
  if (target.reference === undefined) return { target, value: f.value, verdict: verdict(f.value) };
  const r = figures[target.reference];
  if (!isMeasured(r)) return { target, value: undefined, verdict: "n/a", reason: why(target.reference, r) };
  const m = medianRatio(rounds, target.figure, target.reference);
  if (m !== undefined) return { target, value: m.value, verdict: verdict(m.value), rounds: m.count };
  if (r.value === 0) return { target, value: undefined, verdict: "n/a", reason: `${target.reference} is zero` };
  const value = f.value / r.value;
  return { target, value, verdict: verdict(value) };
}

function showFigure(f: Figure | undefined): string {
  if (f === undefined) return "not run";
  if ("unavailable" in f) return `unavailable: ${f.unavailable}`;
  return `${fmt(f.value)} ${f.unit}`;
}

export function renderTargetsTable(figures: Figures, targets: readonly Target[] = TARGETS, rounds: readonly Figures[] = []): string {
  const rows = ["| target | measured | reference | value | goal | result |", "|---|---|---|---|---|---|"];
  for (const t of targets) {
    const e = evaluate(figures, t, rounds);
    const measured = showFigure(figures[t.figure]);
    const reference = t.reference === undefined ? "—" : showFigure(figures[t.reference]);
    const value = e.value === undefined ? "—" : t.reference === undefined ? fmtAgainst(e.value, t.goal) : `${fmtAgainst(e.value, t.goal)}×`;
    const goal = `${t.op} ${t.goal}${t.reference === undefined ? "" : "×"}`;
    const result = e.verdict === "n/a" ? `n/a (${e.reason ?? ""})` : `**${e.verdict}**`;
    rows.push(`| ${cell(t.label)} | ${cell(measured)} | ${cell(reference)} | ${value} | ${goal} | ${cell(result)} |`);
  }
  return rows.join("\n");
}

export function renderInfoRatios(figures: Figures, rounds: readonly Figures[] = []): string {
  const rows = ["| ratio | value |", "|---|---|"];
  for (const r of INFO_RATIOS) {
    const v = medianRatio(rounds, r.figure, r.reference)?.value ?? ratio(figures, r.figure, r.reference);
    rows.push(`| ${cell(r.label)} | ${v === undefined ? "—" : `${fmt(v)}×`} |`);
  }
  return rows.join("\n");
}

export function renderFiguresTable(figures: Figures): string {
  const rows = ["| figure | value |", "|---|---|"];
  for (const name of Object.keys(figures).sort()) rows.push(`| \`${name}\` | ${cell(showFigure(figures[name]))} |`);
  return rows.join("\n");
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  kernel: string;
  node: string;
  os: string;
  memTotalMiB: number;
  loadAvgStart: [number, number, number];
  loadAvgEnd?: [number, number, number];
}

export interface ReportInput {
  startedAt: string;
  revision: string;
  durationS: number;
  quick: boolean;
  machine: MachineInfo;
  figures: Figures;
  /** Each round's pod-to-pod figures, in order (figures holds their medians). */
  rounds?: readonly Figures[];
  notes: string[];
  chart?: string;
}

export function renderMarkdown(r: ReportInput): string {
  const m = r.machine;
  const rounds = r.rounds ?? [];
  const load = (l: [number, number, number] | undefined): string => (l === undefined ? "?" : l.map((x) => x.toFixed(2)).join(" / "));
  const out = [
    `# Bench results ${r.startedAt}`,
    "",
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memTotalMiB} MiB RAM; ${m.os}; kernel ${m.kernel}; Node ${m.node}.`,
    `Load average (1/5/15 min) at start ${load(m.loadAvgStart)}, at end ${load(m.loadAvgEnd)}.`,
    `Run: ${r.quick ? "--quick, " : ""}${r.durationS} s per throughput and connection-rate run; code at ${r.revision}.`,
    "",
    "## Targets (issue 20; ratios measured in the same run)",
    "",
    rounds.length > 1
      ? `measured and reference: median of the rounds; value: median of the ${rounds.length} rounds' own ratios (each round measured both back to back; every round below).`
      : "value: measured / reference for a ratio target (one round).",
    "",
    renderTargetsTable(r.figures, TARGETS, rounds),
    "",
    "## Other ratios",
    "",
    renderInfoRatios(r.figures, rounds),
    "",
    ...(rounds.length > 1 ? [renderRoundsTables(rounds, TARGETS, INFO_RATIOS), ""] : []),
    "## All figures",
    "",
    renderFiguresTable(r.figures),
    "",
  ];
  if (r.chart !== undefined) out.push(`![throughput and latency](${r.chart})`, "");
  if (r.notes.length > 0) out.push("## Notes", "", ...r.notes.map((n) => `- ${n}`), "");
  return out.join("\n");
}
