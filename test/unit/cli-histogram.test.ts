import { Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { POD_READY_METRIC } from "../../src/agent/metrics/metrics.js";
import { formatPodStart, histogramSummary, POD_START_HISTOGRAM } from "../../src/cli/histogram.js";

describe("pod start latency quantiles from the agent's /metrics", () => {
  it("p50 and p99 as histogram_quantile estimates them", async () => {
    const registry = new Registry();
    const h = new Histogram({ name: POD_READY_METRIC, help: "x", buckets: [0.1, 0.2, 0.5, 1], registers: [registry] });
    for (let i = 0; i < 90; i++) h.observe(0.15); // (0.1, 0.2]
    for (let i = 0; i < 10; i++) h.observe(0.7); // (0.5, 1]
    const s = histogramSummary(await registry.metrics(), POD_READY_METRIC);
    expect(s?.count).toBe(100);
    // rank 50 of 90 in (0.1, 0.2]: 0.1 + 0.1 * 50/90
    expect(s?.p50).toBeCloseTo(0.1 + 0.1 * (50 / 90), 6);
    // rank 99: 9th of 10 in (0.5, 1]
    expect(s?.p99).toBeCloseTo(0.5 + 0.5 * (9 / 10), 6);
  });

  it("no observations: a count of 0 and no quantiles; no metric: undefined", async () => {
    const registry = new Registry();
    new Histogram({ name: POD_READY_METRIC, help: "x", buckets: [1], registers: [registry] });
    expect(histogramSummary(await registry.metrics(), POD_READY_METRIC)).toEqual({ count: 0, p50: undefined, p99: undefined });
    expect(histogramSummary("other_metric 1\n", POD_READY_METRIC)).toBeUndefined();
  });

  it("one wording for ambientctl status and the demo: milliseconds, rounded; '-' without observations; the agent's metric name", () => {
    expect(POD_START_HISTOGRAM).toBe(POD_READY_METRIC);
    expect(formatPodStart({ count: 4, p50: 0.0123, p99: 0.0996 })).toBe("p50 12ms p99 100ms over 4 pods");
    expect(formatPodStart({ count: 0, p50: undefined, p99: undefined })).toBe("p50 - p99 - over 0 pods");
  });
});
