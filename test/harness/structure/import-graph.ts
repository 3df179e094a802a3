import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

/** file (relative to the root, "/"-separated) -> the project files it imports. */
export type ImportGraph = Map<string, string[]>;

const TS_FILE = /\.(ts|mts|cts)$/;

/** Every TypeScript file under `dirs` (relative to root), skipping node_modules and dist. */
export function listTsFiles(root: string, dirs: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      if (name === "node_modules" || name === "dist") continue;
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (TS_FILE.test(name) && !name.endsWith(".d.ts")) out.push(toKey(root, path));
    }
  };
  for (const d of dirs) if (existsSync(join(root, d))) walk(join(root, d));
  return out.sort();
}

function toKey(root: string, path: string): string {
  return relative(root, path).split("\\").join("/");
}

// NodeNext: "./x.js" names ./x.ts in the source tree.
function resolveSpecifier(root: string, fromKey: string, spec: string): string | undefined {
  if (!spec.startsWith("./") && !spec.startsWith("../")) return undefined; // packages, node:*
  const base = resolve(root, dirname(fromKey), spec);
  const candidates = [
    base.replace(/\.js$/, ".ts"),
    base.replace(/\.mjs$/, ".mts"),
    base.replace(/\.cjs$/, ".cts"),
    base,
    `${base}.ts`,
    join(base, "index.ts"),
  ];
  const hit = candidates.find((c) => TS_FILE.test(c) && existsSync(c) && statSync(c).isFile());
  return hit === undefined ? undefined : toKey(root, hit);
}

/**
 * The import graph of the given files: static imports and re-exports (type-only ones too: they
 * are dependencies of the design even when erased) and dynamic import() calls, as the
 * TypeScript compiler's own pre-processor reads them.
 */
export function buildImportGraph(root: string, files: readonly string[]): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const key of files) {
    const info = ts.preProcessFile(readFileSync(join(root, key), "utf8"), true, true);
    const deps = new Set<string>();
    for (const ref of info.importedFiles) {
      const target = resolveSpecifier(root, key, ref.fileName);
      if (target !== undefined && target !== key) deps.add(target);
    }
    graph.set(key, [...deps].sort());
  }
  return graph;
}
