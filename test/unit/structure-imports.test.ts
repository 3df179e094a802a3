import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { findCycles } from "../harness/structure/cycles.js";
import { buildImportGraph, listTsFiles } from "../harness/structure/import-graph.js";

const ROOT = resolve(import.meta.dirname, "../..");
const DIRS = ["src", "cni-plugin", "bench", "test", "scripts"];

describe("import graph of the project", () => {
  it("has no import cycle (type-only and dynamic imports included)", () => {
    const files = listTsFiles(ROOT, DIRS);
    const graph = buildImportGraph(ROOT, files);
    // The scan must see the real tree, or "no cycle" proves nothing.
    expect(files.length).toBeGreaterThan(200);
    expect(graph.get("src/native/index.ts")).toContain("src/native/errors.ts");
    const cycles = findCycles(graph).map((c) => c.join(" -> "));
    expect(cycles).toEqual([]);
  });
});

describe("the cycle check can fail", () => {
  it("finds a cycle in a synthetic graph and reports its path", () => {
    const graph = new Map<string, string[]>([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts", "d.ts"]],
      ["d.ts", []],
      ["e.ts", ["e.ts"]],
    ]);
    expect(findCycles(graph)).toEqual(expect.arrayContaining([["a.ts", "b.ts", "c.ts", "a.ts"], ["e.ts", "e.ts"]]));
    expect(findCycles(graph)).toHaveLength(2);
  });

  it("finds none in a graph that only points downward", () => {
    const graph = new Map<string, string[]>([
      ["a.ts", ["b.ts", "c.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", []],
    ]);
    expect(findCycles(graph)).toEqual([]);
  });

  let tmp: string | undefined;
  afterEach(() => {
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
    tmp = undefined;
  });

  it("finds a cycle among real files written with NodeNext .js specifiers", () => {
    tmp = mkdtempSync(join(tmpdir(), "structure-cycle-"));
    mkdirSync(join(tmp, "src", "x"), { recursive: true });
    writeFileSync(join(tmp, "src", "a.ts"), 'import { b } from "./x/b.js";\nexport const a = b;\n');
    writeFileSync(join(tmp, "src", "x", "b.ts"), 'import type { T } from "../c.js";\nexport const b = 1 as T;\n');
    writeFileSync(join(tmp, "src", "c.ts"), 'export type T = number;\nexport const c = () => import("./a.js");\n');
    const graph = buildImportGraph(tmp, listTsFiles(tmp, ["src"]));
    expect(findCycles(graph)).toEqual([["src/a.ts", "src/x/b.ts", "src/c.ts", "src/a.ts"]]);
  });
});
