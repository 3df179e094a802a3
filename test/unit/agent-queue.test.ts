import { describe, expect, it } from "vitest";
import { RetryQueue } from "../../src/agent/enroll/queue.js";

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe("retrying work queue", () => {
  it("runs a key once for several adds while it waits, and again if added while running", async () => {
    const runs: string[] = [];
    const gate = deferred();
    const q = new RetryQueue(
      async (k) => {
        runs.push(k);
        if (runs.length === 1) await gate.promise;
      },
      { baseDelayMs: 10, maxDelayMs: 100, concurrency: 1 },
    );
    q.add("a");
    q.add("b");
    q.add("b");
    q.add("a"); // "a" is running: marked dirty, runs once more
    gate.resolve();
    await q.idle();
    expect(runs).toEqual(["a", "b", "a"]);
  });

  it("never runs the same key concurrently", async () => {
    let active = 0;
    let maxActive = 0;
    const q = new RetryQueue(
      async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((r) => setTimeout(r, 5));
        active--;
      },
      { baseDelayMs: 10, maxDelayMs: 100, concurrency: 4 },
    );
    for (let i = 0; i < 10; i++) q.add("same");
    await new Promise((r) => setTimeout(r, 1));
    q.add("same");
    await q.idle();
    expect(maxActive).toBe(1);
  });

  it("retries failures with capped exponential backoff, then succeeds and resets", async () => {
    const times: number[] = [];
    let fails = 4;
    const results: boolean[] = [];
    const q = new RetryQueue(
      async () => {
        times.push(Date.now());
        if (fails-- > 0) throw new Error("not yet");
      },
      { baseDelayMs: 20, maxDelayMs: 50, concurrency: 1 },
      (_k, ok) => results.push(ok),
    );
    expect([1, 2, 3, 4, 10].map((n) => q.delayFor(n))).toEqual([20, 40, 50, 50, 50]);
    q.add("p");
    await expect.poll(() => results.at(-1), { timeout: 3000 }).toBe(true);
    expect(results).toEqual([false, false, false, false, true]);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps[0]).toBeGreaterThanOrEqual(18);
    expect(gaps[1]).toBeGreaterThanOrEqual(38);
    expect(gaps[3]).toBeLessThan(200); // capped
    expect(q.backingOff).toEqual([]);
    await q.stop();
  });

  it("a new add cuts a pending backoff short; stop cancels retries", async () => {
    let n = 0;
    const q = new RetryQueue(
      async () => {
        n++;
        throw new Error("down");
      },
      { baseDelayMs: 60_000, maxDelayMs: 60_000, concurrency: 1 },
    );
    q.add("x");
    await expect.poll(() => q.backingOff).toEqual(["x"]);
    q.add("x");
    await expect.poll(() => n).toBe(2);
    await q.stop();
    expect(q.backingOff).toEqual([]);
  });
});
