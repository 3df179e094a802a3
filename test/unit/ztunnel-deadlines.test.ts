import { describe, expect, it } from "vitest";
import { Deadlines } from "../../src/ztunnel/proxy/deadlines.js";

describe("Deadlines (one coarse timer for equal-length deadlines)", () => {
  it("fires each deadline once, not before its length, in the order they were added", async () => {
    const d = new Deadlines(40);
    const started = Date.now();
    const fired: Array<{ id: number; at: number }> = [];
    const all = new Promise<void>((resolve) => {
      for (const id of [1, 2, 3]) {
        d.add(() => {
          fired.push({ id, at: Date.now() });
          if (fired.length === 3) resolve();
        });
      }
    });
    await all;
    expect(fired.map((f) => f.id)).toEqual([1, 2, 3]);
    for (const f of fired) expect(f.at - started).toBeGreaterThanOrEqual(40);
    expect(d.size).toBe(0);
  });

  it("a cancelled deadline never fires, one added after it still does", async () => {
    const d = new Deadlines(20);
    let cancelledFired = false;
    const first = d.add(() => (cancelledFired = true));
    first.cancel();
    first.cancel();
    expect(d.size).toBe(0);
    await new Promise<void>((resolve) => d.add(resolve));
    expect(cancelledFired).toBe(false);
  });

  it("keeps working after its timer stopped for lack of entries", async () => {
    const d = new Deadlines(10);
    await new Promise<void>((resolve) => d.add(resolve));
    // The sweep that found the set empty stopped the interval; a new entry starts another.
    await new Promise((r) => setTimeout(r, 30));
    await new Promise<void>((resolve) => d.add(resolve));
    expect(d.size).toBe(0);
  });
});
