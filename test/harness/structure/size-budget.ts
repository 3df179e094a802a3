import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

/** Files that count as source for the size budget (code, not data or docs). */
export const SOURCE_FILE = /\.(ts|mts|cts|js|mjs|cjs|c|h|sh|py)$/;

export interface SizeBudget {
  /** Directories to scan, relative to the root. */
  dirs: readonly string[];
  /** Paths (relative, "/"-separated) to skip, e.g. generated benchmark results. */
  exclude: readonly RegExp[];
  maxLines: number;
}

export interface Oversized {
  file: string;
  lines: number;
}

function countLines(text: string): number {
  if (text === "") return 0;
  return text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
}

/** Every source file over the budget, largest first. */
export function oversizedFiles(root: string, budget: SizeBudget): Oversized[] {
  const found: Oversized[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      if (name === "node_modules" || name === "dist" || name === "build") continue;
      const path = join(dir, name);
      const key = relative(root, path).split("\\").join("/");
      if (budget.exclude.some((re) => re.test(key))) continue;
      if (statSync(path).isDirectory()) walk(path);
      else if (SOURCE_FILE.test(name)) {
        const lines = countLines(readFileSync(path, "utf8"));
        if (lines > budget.maxLines) found.push({ file: key, lines });
      }
    }
  };
  for (const d of budget.dirs) walk(join(root, d));
  return found.sort((a, b) => b.lines - a.lines);
}
