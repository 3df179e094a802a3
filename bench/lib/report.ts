import { isMeasured, type Figure, type Figures } from "./figures.js";

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

export const TARGETS: readonly Target[] = [
  { label: "throughput, 1 stream: HBONE / stunnel", figure: "throughput.hbone.1", reference: "throughput.stunnel.1", op: ">=", goal: 1.0 },
  { label: "throughput, 4 streams from one pod (pooled): HBONE / stunnel", figure: "throughput.hbone.4", reference: "throughput.stunnel.4", op: ">=", goal: 1.0 },
  { label: "throughput, 4 pods x 1 stream: HBONE / stunnel 4 streams", figure: "throughput.hbone.4pods", reference: "throughput.stunnel.4", op: ">=", goal: 1.0 },
  { label: "1 KiB request/response p50: HBONE / stunnel", figure: "latency.hbone.p50", reference: "latency.stunnel.p50", op: "<=", goal: 1.2 },
  { label: "1 KiB request/response p99: HBONE / stunnel", figure: "latency.hbone.p99", reference: "latency.stunnel.p99", op: "<=", goal: 1.2 },
  { label: "new connections/s: HBONE / raw TCP", figure: "connrate.hbone", reference: "connrate.raw", op: ">=", goal: 0.5 },
  { label: "1,000 pods enrolled, all listeners up on every worker", figure: "scale.enrollSeconds", op: "<=", goal: 10 },
  { label: "ztunnel RSS with 1,000 pods", figure: "scale.rssMiB", op: "<=", goal: 300 },
  { label: "ZDS Add→Ack p99 (bench/zds-add-ack)", figure: "zds.addAckP99Ms", op: "<=", goal: 20 },
  { label: "CNI ADD exec-to-exit p99, warm agent", figure: "cni.addP99Ms", op: "<=", goal: 100 },
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
];

export type Verdict = "PASS" | "MISS" | "n/a";

export interface Evaluation {
  target: Target;
  /** figure / reference, or the figure itself for an absolute target. */
  value: number | undefined;
  verdict: Verdict;
  /** Why there is no verdict (a figure was not measured). */
  reason?: string;
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

export function evaluate(figures: Figures, target: Target): Evaluation {
  const f = figures[target.figure];
  if (!isMeasured(f)) return { target, value: undefined, verdict: "n/a", reason: why(target.figure, f) };
  let value = f.value;
  if (target.reference !== undefined) {
    const r = figures[target.reference];
    if (!isMeasured(r)) return { target, value: undefined, verdict: "n/a", reason: why(target.reference, r) };
    if (r.value === 0) return { target, value: undefined, verdict: "n/a", reason: `${target.reference} is zero` };
    value = f.value / r.value;
  }
  const pass = target.op === ">=" ? value >= target.goal : value <= target.goal;
  return { target, value, verdict: pass ? "PASS" : "MISS" };
}

function fmt(x: number): string {
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function showFigure(f: Figure | undefined): string {
  if (f === undefined) return "not run";
  if ("unavailable" in f) return `unavailable: ${f.unavailable}`;
  return `${fmt(f.value)} ${f.unit}`;
}

/** Markdown-safe cell text (a pipe would split the cell). */
function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

export function renderTargetsTable(figures: Figures, targets: readonly Target[] = TARGETS): string {
  const rows = ["| target | measured | reference | value | goal | result |", "|---|---|---|---|---|---|"];
  for (const t of targets) {
    const e = evaluate(figures, t);
    const measured = showFigure(figures[t.figure]);
    const reference = t.reference === undefined ? "—" : showFigure(figures[t.reference]);
    const value = e.value === undefined ? "—" : t.reference === undefined ? fmt(e.value) : `${fmt(e.value)}×`;
    const goal = `${t.op} ${t.goal}${t.reference === undefined ? "" : "×"}`;
    const result = e.verdict === "n/a" ? `n/a (${e.reason ?? ""})` : `**${e.verdict}**`;
    rows.push(`| ${cell(t.label)} | ${cell(measured)} | ${cell(reference)} | ${value} | ${goal} | ${cell(result)} |`);
  }
  return rows.join("\n");
}

export function renderInfoRatios(figures: Figures): string {
  const rows = ["| ratio | value |", "|---|---|"];
  for (const r of INFO_RATIOS) {
    const v = ratio(figures, r.figure, r.reference);
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
  notes: string[];
  chart?: string;
}

export function renderMarkdown(r: ReportInput): string {
  const m = r.machine;
  const load = (l: [number, number, number] | undefined): string => (l === undefined ? "?" : l.map((x) => x.toFixed(2)).join(" / "));
  const out = [
    `# Bench results ${r.startedAt}`,
    "",
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memTotalMiB} MiB RAM; ${m.os}; kernel ${m.kernel}; Node ${m.node}.`,
    `Load average (1/5/15 min) at start ${load(m.loadAvgStart)}, at end ${load(m.loadAvgEnd)}.`,
    `Run: ${r.quick ? "--quick, " : ""}${r.durationS} s per throughput and connection-rate run; code at ${r.revision}.`,
    "",
    "## Targets (issue 10; ratios measured in the same run)",
    "",
    renderTargetsTable(r.figures),
    "",
    "## Other ratios",
    "",
    renderInfoRatios(r.figures),
    "",
    "## All figures",
    "",
    renderFiguresTable(r.figures),
    "",
  ];
  if (r.chart !== undefined) out.push(`![throughput and latency](${r.chart})`, "");
  if (r.notes.length > 0) out.push("## Notes", "", ...r.notes.map((n) => `- ${n}`), "");
  return out.join("\n");
}
