import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { MAX_SEMI_SPACE_MIB } from "../../src/ztunnel/proxy/heap-tuning.js";
import { bundleChild } from "../fixtures/bundle-child.js";
import { tempDir } from "../fixtures/ztunnel-pki.js";

// V8 flags are process-wide, so the check runs in child processes (never in the test runner's
// threads): a worker started after tuneHeap() keeps its young generation at two semi-spaces of
// MAX_SEMI_SPACE_MIB, where the same churn without it grows the young generation past that.

const run = promisify(execFile);

describe("tuneHeap", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  it("caps the young generation of workers started after it", async () => {
    const dir = await tempDir("heap-tuning");
    cleanups.push(dir.cleanup);
    const bundle = await bundleChild("test/fixtures/heap-tuning-child.ts", dir.path);
    const newSpace = async (mode: string): Promise<number> => Number((await run(process.execPath, [bundle, mode])).stdout.trim());
    const tuned = await newSpace("tuned");
    const untuned = await newSpace("default");
    expect(tuned).toBeGreaterThan(0);
    expect(tuned).toBeLessThanOrEqual(2 * MAX_SEMI_SPACE_MIB * 1024 * 1024);
    expect(untuned).toBeGreaterThan(tuned);
  });
});
