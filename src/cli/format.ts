import { stringify } from "yaml";
import { UsageError } from "./errors.js";

// Output: aligned tables for people (istioctl ztunnel-config style: upper-case headers, two
// spaces between columns), JSON or YAML of the same rows for scripts.

export type OutputFormat = "table" | "json" | "yaml";

export function parseFormat(raw: string | undefined): OutputFormat {
  if (raw === undefined || raw === "table" || raw === "wide") return "table";
  if (raw === "json" || raw === "yaml") return raw;
  throw new UsageError(`-o ${raw}: unknown output format (use table, json or yaml)`);
}

export function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const cells = [headers.map((h) => h.toUpperCase()), ...rows.map((r) => r.map((c) => String(c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ").trimEnd()).join("\n") + "\n";
}

export function render(format: OutputFormat, data: unknown, asTable: () => string): string {
  switch (format) {
    case "json":
      return JSON.stringify(data, null, 2) + "\n";
    case "yaml":
      return stringify(data);
    case "table":
      return asTable();
  }
}

export function hexMark(mark: number): string {
  return `0x${mark.toString(16)}`;
}
