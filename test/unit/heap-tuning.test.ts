import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { MAX_SEMI_SPACE_MIB, MIN_SEMI_SPACE_MIB } from "../../src/ztunnel/proxy/heap-tuning.js";
import { bundleChild } from "../fixtures/bundle-child.js";
import { tempDir } from "../fixtures/ztunnel-pki.js";

// V8 flags are process-wide, so the check runs in child processes (never in the test runner's
// threads): a worker started after tuneHeap() keeps its young generation at two semi-spaces of
// MAX_SEMI_SPACE_MIB, where the same churn without it grows the young generation past that;
// and one whose garbage all dies young keeps its young generation at MIN_SEMI_SPACE_MIB, where
// without it the young generation stays at V8's smaller start.

const run = promisify(execFile);

describe("tuneHeap", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  // Bundled once for both tests.
  let bundled: Promise<string> | undefined;
  const child = (): Promise<string> =>
    (bundled ??= (async () => {
      const dir = await tempDir("heap-tuning");
      cleanups.push(dir.cleanup);
      return bundleChild("test/fixtures/heap-tuning-child.ts", dir.path);
    })());

  it("caps the young generation of workers started after it", async () => {
    const bundle = await child();
    const newSpace = async (mode: string): Promise<number> => Number((await run(process.execPath, [bundle, mode])).stdout.trim());
    const tuned = await newSpace("tuned");
    const untuned = await newSpace("default");
    expect(tuned).toBeGreaterThan(0);
    expect(tuned).toBeLessThanOrEqual(2 * MAX_SEMI_SPACE_MIB * 1024 * 1024);
    expect(untuned).toBeGreaterThan(tuned);
  });

  it("keeps the young generation of workers whose objects die young at its minimum", async () => {
    const bundle = await child();
    const settled = async (mode: string): Promise<number> => Number((await run(process.execPath, [bundle, mode, "short"])).stdout.trim());
    const tuned = await settled("tuned");
    const untuned = await settled("default");
    expect(tuned).toBeGreaterThanOrEqual(2 * MIN_SEMI_SPACE_MIB * 1024 * 1024);
    expect(untuned).toBeLessThan(tuned);
  });
});
