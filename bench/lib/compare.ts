import { isMeasured, type Figures } from "./figures.js";
import { mergeRounds } from "./rounds.js";

// `--compare <ref>`: per-figure ratios of this build over a baseline build, each figure the
// median of the rounds each side ran (base and branch alternate round by round, so both see
// the same machine load). Pure functions: the orchestration is bench/compare-run.ts.

export interface CompareRow {
  readonly figure: string;
  readonly unit: string;
  readonly base: number | undefined;
  readonly branch: number | undefined;
  /** branch / base; undefined when either side is missing or the base is 0. */
  readonly ratio: number | undefined;
  /** Every round's value, base and branch, for the record. */
  readonly baseRounds: readonly number[];
  readonly branchRounds: readonly number[];
}

export function compareFigures(base: readonly Figures[], branch: readonly Figures[]): CompareRow[] {
  const b = mergeRounds(base);
  const n = mergeRounds(branch);
  const names = [...new Set([...Object.keys(b.figures), ...Object.keys(n.figures)])].sort();
  return names.map((figure) => {
    const bf = b.figures[figure];
    const nf = n.figures[figure];
    const bv = isMeasured(bf) ? bf.value : undefined;
    const nv = isMeasured(nf) ? nf.value : undefined;
    return {
      figure,
      unit: (isMeasured(nf) ? nf.unit : isMeasured(bf) ? bf.unit : "") || "",
      base: bv,
      branch: nv,
      ratio: bv !== undefined && nv !== undefined && bv !== 0 ? nv / bv : undefined,
      baseRounds: b.perRound[figure] ?? [],
      branchRounds: n.perRound[figure] ?? [],
    };
  });
}

const num = (v: number | undefined): string => (v === undefined ? "—" : Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));

export function renderCompare(rows: readonly CompareRow[], baseRef: string, branchRef: string, rounds: number): string {
  const lines = [
    `# Bench comparison: ${branchRef} vs ${baseRef}`,
    "",
    `${rounds} round(s), base and branch alternating; each value is the median of its rounds. Ratio = branch / base (higher is better for rates, lower for latencies, CPU and memory).`,
    "",
    "| figure | unit | base | branch | ratio | base rounds | branch rounds |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.figure} | ${r.unit} | ${num(r.base)} | ${num(r.branch)} | ${r.ratio === undefined ? "—" : `${r.ratio.toFixed(2)}×`} | ${r.baseRounds.map(num).join(", ")} | ${r.branchRounds.map(num).join(", ")} |`,
    );
  }
  return `${lines.join("\n")}\n`;
}
