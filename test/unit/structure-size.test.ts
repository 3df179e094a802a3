import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { oversizedFiles, type SizeBudget } from "../harness/structure/size-budget.js";

const ROOT = resolve(import.meta.dirname, "../..");

// Small modules with one job each: no source file over 400 lines (benchmark results are data).
const PROJECT_BUDGET: SizeBudget = {
  dirs: ["src", "cni-plugin", "native/src", "scripts", "bench"],
  exclude: [/^bench\/results\//],
  maxLines: 400,
};

describe("file-size budget", () => {
  it("no source file is over 400 lines", () => {
    expect(oversizedFiles(ROOT, PROJECT_BUDGET)).toEqual([]);
  });
});

describe("the size budget can fail", () => {
  let tmp: string | undefined;
  afterEach(() => {
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
    tmp = undefined;
  });

  const lines = (n: number): string => "x;\n".repeat(n);

  it("reports a file over the budget, and not one exactly at it, data or excluded results", () => {
    tmp = mkdtempSync(join(tmpdir(), "structure-size-"));
    mkdirSync(join(tmp, "src", "deep"), { recursive: true });
    mkdirSync(join(tmp, "bench", "results"), { recursive: true });
    writeFileSync(join(tmp, "src", "deep", "big.ts"), lines(401));
    writeFileSync(join(tmp, "src", "at-limit.ts"), lines(400));
    writeFileSync(join(tmp, "src", "native.c"), lines(450));
    writeFileSync(join(tmp, "src", "golden.json"), lines(1000));
    writeFileSync(join(tmp, "bench", "results", "run.js"), lines(1000));
    const found = oversizedFiles(tmp, { dirs: ["src", "bench"], exclude: [/^bench\/results\//], maxLines: 400 });
    expect(found).toEqual([
      { file: "src/native.c", lines: 450 },
      { file: "src/deep/big.ts", lines: 401 },
    ]);
  });
});
