import { describe, expect, it } from "vitest";
import { compareFigures, renderCompare } from "../../bench/lib/compare.js";
import { compareSideArgs, parseOptions } from "../../bench/lib/options.js";

describe("bench --compare", () => {
  it("parses --compare and leaves each side the user's options minus the ones it owns", () => {
    const argv = ["--only", "latency,connrate", "--compare", "main~3", "--rounds=3", "--out", "/tmp/x", "--quick"];
    const o = parseOptions(argv, "/d");
    expect(o.compare).toBe("main~3");
    expect(o.rounds).toBe(3);
    expect(compareSideArgs(argv)).toEqual(["--only", "latency,connrate", "--quick"]);
    expect(parseOptions(["--quick"], "/d").compare).toBeUndefined();
    expect(() => parseOptions(["--compare"], "/d")).toThrow(/--compare needs a value/);
  });

  it("ratios are branch over base of each side's median; a figure missing on one side has no ratio", () => {
    const f = (v: number) => ({ value: v, unit: "Gbit/s" });
    const rows = compareFigures(
      [{ "throughput.hbone.1": f(2), "latency.p50": f(100) }, { "throughput.hbone.1": f(4), "latency.p50": { unavailable: "timeout" } }, { "throughput.hbone.1": f(3) }],
      [{ "throughput.hbone.1": f(3), "new.row": f(1) }, { "throughput.hbone.1": f(6) }, { "throughput.hbone.1": f(4.5) }],
    );
    const tp = rows.find((r) => r.figure === "throughput.hbone.1");
    expect(tp).toMatchObject({ base: 3, branch: 4.5, baseRounds: [2, 4, 3], branchRounds: [3, 6, 4.5] });
    expect(tp?.ratio).toBeCloseTo(1.5);
    expect(rows.find((r) => r.figure === "latency.p50")).toMatchObject({ base: 100, branch: undefined, ratio: undefined });
    expect(rows.find((r) => r.figure === "new.row")).toMatchObject({ base: undefined, branch: 1, ratio: undefined });
    const md = renderCompare(rows, "main (abc)", "def", 3);
    expect(md).toMatch(/\| throughput\.hbone\.1 \| Gbit\/s \| 3\.00 \| 4\.50 \| 1\.50× \| 2\.00, 4\.00, 3\.00 \| 3\.00, 6\.00, 4\.50 \|/);
    expect(md).toMatch(/\| latency\.p50 \| Gbit\/s \| 100 \| — \| — \|/);
  });
});
