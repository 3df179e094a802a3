import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// The Kubernetes client costs tens of MiB per process; ztunnel on a local file must not load
// it. Checked on the static import graph (what Node loads before any dynamic import runs).

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Specifiers a module loads at evaluation: every import/export-from except `import type` / `export type`. */
function staticImports(source: string): string[] {
  const out: string[] = [];
  const fromRe = /^\s*(import|export)\s+(type\s+)?[^;]*?\bfrom\s+["']([^"']+)["']/gms;
  for (const m of source.matchAll(fromRe)) if (m[2] === undefined && m[3] !== undefined) out.push(m[3]);
  for (const m of source.matchAll(/^\s*import\s+["']([^"']+)["']/gm)) if (m[1] !== undefined) out.push(m[1]);
  return out;
}

/** Bare (package) specifiers, and our files, reachable from `entry` through static imports. */
function reachable(entry: string): { packages: Map<string, string>; files: Set<string> } {
  const packages = new Map<string, string>();
  const seen = new Set<string>();
  const todo = [entry];
  for (let file = todo.pop(); file !== undefined; file = todo.pop()) {
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of staticImports(readFileSync(file, "utf8"))) {
      if (spec.startsWith(".")) todo.push(resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
      else if (!packages.has(spec)) packages.set(spec, file);
    }
  }
  return { packages, files: seen };
}

describe("ztunnel loads the Kubernetes client only in Kubernetes mode", () => {
  it("the import parser keeps value imports and drops type-only ones", () => {
    const src = [
      'import type { A } from "type-only";',
      'import { b, type C } from "mixed";',
      "import {\n  d,\n} from './multi.js';",
      'export type { E } from "type-export";',
      'export { f } from "./value-export.js";',
      'import "side-effect";',
      'const lazy = await import("dynamic");',
    ].join("\n");
    expect(staticImports(src).sort()).toEqual(["./multi.js", "./value-export.js", "mixed", "side-effect"]);
  });

  it("neither the main thread nor a proxy worker imports @kubernetes/client-node statically", () => {
    for (const entry of ["src/ztunnel/main.ts", "src/ztunnel/worker/entry.ts"]) {
      const { packages, files } = reachable(join(ROOT, entry));
      // The walk must reach real dependencies (and, from main, the source selection) to mean anything.
      expect(packages.has("pino"), entry).toBe(true);
      if (entry.endsWith("main.ts")) expect(files).toContain(join(ROOT, "src/ztunnel/cluster/select.ts"));
      expect(packages.get("@kubernetes/client-node"), entry).toBeUndefined();
    }
    expect([...reachable(join(ROOT, "src/ztunnel/cluster/kube-source.ts")).packages.keys()]).toContain("@kubernetes/client-node");
  });
});
