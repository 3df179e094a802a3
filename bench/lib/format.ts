// Number and cell formatting shared by the markdown reports.

/** 3 significant-ish digits: 123, 12.3, 1.23. */
export function fmt(x: number): string {
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** Markdown-safe cell text (a pipe would split the cell). */
export function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}
