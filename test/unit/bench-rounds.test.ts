import { describe, expect, it } from "vitest";
import { median, mergeRounds } from "../../bench/lib/rounds.js";
import { parseOptions } from "../../bench/lib/options.js";

describe("bench rounds", () => {
  it("reports the median of the rounds that measured a figure and keeps every round's value", () => {
    const m = mergeRounds([
      { "throughput.hbone.1": { value: 2.0, unit: "Gbit/s" }, "latency.hbone.p50": { value: 500, unit: "µs" } },
      { "throughput.hbone.1": { value: 1.2, unit: "Gbit/s" }, "latency.hbone.p50": { unavailable: "ztunnel not usable" } },
      { "throughput.hbone.1": { value: 2.4, unit: "Gbit/s" }, "latency.hbone.p50": { value: 420, unit: "µs" } },
    ]);
    expect(m.figures["throughput.hbone.1"]).toEqual({ value: 2.0, unit: "Gbit/s" });
    // Two measured rounds: the mean of the middle pair; the failed round does not count.
    expect(m.figures["latency.hbone.p50"]).toEqual({ value: 460, unit: "µs" });
    expect(m.perRound).toEqual({ "throughput.hbone.1": [2.0, 1.2, 2.4], "latency.hbone.p50": [500, 420] });
  });

  it("keeps the first reason when no round measured a figure", () => {
    const m = mergeRounds([{ "connrate.stunnel": { unavailable: "stunnel path did not start" } }, { "connrate.stunnel": { unavailable: "later reason" } }]);
    expect(m.figures["connrate.stunnel"]).toEqual({ unavailable: "stunnel path did not start" });
    expect(m.perRound).toEqual({});
  });

  it("median handles odd and even counts and refuses an empty list", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow(RangeError);
  });

  it("--rounds defaults to 3 (1 with --quick) and rejects nonsense", () => {
    expect(parseOptions([], "/r").rounds).toBe(3);
    expect(parseOptions(["--quick"], "/r").rounds).toBe(1);
    expect(parseOptions(["--rounds", "5"], "/r").rounds).toBe(5);
    expect(() => parseOptions(["--rounds", "0"], "/r")).toThrow(/--rounds must be/);
    expect(() => parseOptions(["--rounds", "2.5"], "/r")).toThrow(/--rounds must be/);
  });
});
