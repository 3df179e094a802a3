// Number and cell formatting shared by the markdown reports.

/** 3 significant-ish digits: 123, 12.3, 1.23. */
export function fmt(x: number): string {
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/**
 * fmt, with more decimals while the shown number would equal `mark` though x does not: a value
 * just short of a target's goal must not print as the goal (0.795 as "0.80" beside MISS).
 */
export function fmtAgainst(x: number, mark: number): string {
  let shown = fmt(x);
  for (let digits = 3; Number(shown) === mark && x !== mark && digits <= 6; digits++) shown = x.toFixed(digits);
  return shown;
}

/** Markdown-safe cell text (a pipe would split the cell). */
export function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}
