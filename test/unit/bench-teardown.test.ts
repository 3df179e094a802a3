import { describe, expect, it } from "vitest";
import { Teardown, withTimeout } from "../../bench/lib/teardown.js";

describe("bench teardown", () => {
  it("undoes in reverse order, keeps going after a failure and reports it", async () => {
    const t = new Teardown();
    const done: string[] = [];
    t.add("a", async () => void done.push("a"));
    t.add("b", async () => {
      throw new Error("boom");
    });
    t.add("c", async () => void done.push("c"));
    expect(await t.run()).toEqual(["b: boom"]);
    expect(done).toEqual(["c", "a"]);
    expect(await t.run()).toEqual(["b: boom"]); // idempotent: the same run, nothing undone twice
    expect(done).toEqual(["c", "a"]);
  });

  it("runOne undoes one step early and only once", async () => {
    const t = new Teardown();
    const done: string[] = [];
    t.add("x", async () => void done.push("x"));
    t.add("y", async () => void done.push("y"));
    await t.runOne("x");
    await t.runOne("x");
    await t.runOne("never added");
    await t.run();
    expect(done).toEqual(["x", "y"]);
  });

  it("a step that hangs is abandoned after the step timeout, later steps still run", async () => {
    const t = new Teardown();
    const done: string[] = [];
    t.add("first", async () => void done.push("first"));
    t.add("hangs", () => new Promise<void>(() => undefined));
    expect(await t.run(50)).toEqual(["hangs: timed out after 50 ms"]);
    expect(done).toEqual(["first"]);
  });

  it("withTimeout passes the value through or rejects naming what timed out", async () => {
    expect(await withTimeout("fast", 1000, Promise.resolve(7))).toBe(7);
    await expect(withTimeout("scale row", 600_000, Promise.reject(new Error("netns busy")))).rejects.toThrow("netns busy");
    await expect(withTimeout("latency row", 20, new Promise(() => undefined))).rejects.toThrow("latency row timed out after 20 ms");
  });
});
