import { describe, expect, it } from "vitest";
import { MetricsAccumulator } from "../../src/ztunnel/metrics/accumulator.js";
import { LabelMemo } from "../../src/ztunnel/metrics/label-memo.js";
import { labelValues, trafficLabels, type TrafficLabelInput } from "../../src/ztunnel/metrics/labels.js";

const input = (name: string): TrafficLabelInput => ({ reporter: "source", destination: { name, namespace: "ns" }, securityPolicy: "mutual_tls" });

describe("LabelMemo", () => {
  it("builds a key's labels once per state version, and again after the version changed", () => {
    const memo = new LabelMemo();
    let builds = 0;
    const build = (name: string) => (): TrafficLabelInput => {
      builds++;
      return input(name);
    };
    const a = memo.values(1, "k", build("a"));
    expect(a).toEqual(labelValues(trafficLabels(input("a"))));
    expect(memo.values(1, "k", build("other"))).toBe(a);
    expect(builds).toBe(1);
    // A new state may have changed what the key stands for: rebuilt from the new input.
    const b = memo.values(2, "k", build("b"));
    expect(builds).toBe(2);
    expect(b).toEqual(labelValues(trafficLabels(input("b"))));
  });

  it("memoized values count into the same series as open(labels) does, across flushes", () => {
    const acc = new MetricsAccumulator();
    const values = new LabelMemo().values(1, "k", () => input("a"));
    acc.openValues(values).close();
    acc.open(trafficLabels(input("a"))).close();
    expect(acc.flush()?.series).toEqual([{ labels: values, opened: 2, closed: 2, failed: 0, received: 0, sent: 0 }]);
    // The flush dropped the idle series; the same array opens a fresh one.
    acc.openValues(values).close({ failed: true });
    expect(acc.flush()?.series).toEqual([{ labels: values, opened: 1, closed: 1, failed: 1, received: 0, sent: 0 }]);
  });
});
