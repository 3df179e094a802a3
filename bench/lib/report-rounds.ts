import { isMeasured, type Figures } from "./figures.js";
import { cell, fmt } from "./format.js";
import { median, roundRatios } from "./rounds.js";

// Every round of the pod-to-pod rows in the report (issue 20: "report the median of >= 3
// rounds and every round"): one table of ratios, target or not, and one of the figures.

export interface RoundRatio {
  label: string;
  figure: string;
  reference?: string;
  op?: ">=" | "<=";
  goal?: number;
}

function header(first: readonly string[], n: number): string[] {
  const cols = [...first, ...Array.from({ length: n }, (_, i) => `round ${i + 1}`), "median"];
  return [`| ${cols.join(" | ")} |`, `|${cols.map(() => "---").join("|")}|`];
}

/** Ratios measured in at least one round (targets first, then the other ratios). */
export function renderRoundRatios(rounds: readonly Figures[], targets: readonly RoundRatio[], info: readonly RoundRatio[]): string {
  const rows = header(["ratio", "goal"], rounds.length);
  for (const t of [...targets, ...info]) {
    if (t.reference === undefined) continue;
    const xs = roundRatios(rounds, t.figure, t.reference);
    const got = xs.filter((x): x is number => x !== undefined);
    if (got.length === 0) continue;
    const goal = t.op === undefined || t.goal === undefined ? "—" : `${t.op} ${t.goal}×`;
    rows.push(`| ${cell(t.label)} | ${goal} | ${xs.map((x) => (x === undefined ? "—" : `${fmt(x)}×`)).join(" | ")} | ${fmt(median(got))}× |`);
  }
  return rows.join("\n");
}

/** Every figure any round measured, each round's value (or why it is missing). */
export function renderRoundFigures(rounds: readonly Figures[]): string {
  const rows = header(["figure", "unit"], rounds.length);
  const names = [...new Set(rounds.flatMap((r) => Object.keys(r)))].sort();
  for (const name of names) {
    const fs = rounds.map((r) => r[name]);
    const got = fs.filter(isMeasured);
    const unit = got[0]?.unit ?? "";
    const cells = fs.map((f) => (f === undefined ? "—" : isMeasured(f) ? fmt(f.value) : `unavailable: ${cell(f.unavailable.slice(0, 80))}`));
    rows.push(`| \`${name}\` | ${unit} | ${cells.join(" | ")} | ${got.length === 0 ? "—" : fmt(median(got.map((f) => f.value)))} |`);
  }
  return rows.join("\n");
}

export function renderRoundsTables(rounds: readonly Figures[], targets: readonly RoundRatio[], info: readonly RoundRatio[]): string {
  return [
    "## Every round",
    "",
    "Pod-to-pod rows (throughput, CPU per GiB, latency, connection rate), each round measuring every path back to back; a target's value above is the median of its row here. `machine.load1AtRoundStart` is the 1-minute load average as the round started.",
    "",
    renderRoundRatios(rounds, targets, info),
    "",
    renderRoundFigures(rounds),
  ].join("\n");
}
