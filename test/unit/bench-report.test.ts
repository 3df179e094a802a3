import { describe, expect, it } from "vitest";
import { chartData, gnuplotScript } from "../../bench/lib/chart.js";
import { setFigure, type Figures } from "../../bench/lib/figures.js";
import { evaluate, ratio, renderInfoRatios, renderMarkdown, renderTargetsTable, TARGETS, type Target } from "../../bench/lib/report.js";

const machine = { cpuModel: "AMD EPYC", cores: 2, kernel: "6.1", node: "v20.20.2", os: "Debian 12", memTotalMiB: 4096, loadAvgStart: [4.2, 4.5, 4.7] as [number, number, number] };

function figures(): Figures {
  const f: Figures = {};
  setFigure(f, "throughput.raw.1", 10, "Gbit/s");
  setFigure(f, "throughput.stunnel.1", 2, "Gbit/s");
  setFigure(f, "throughput.hbone.1", 2.5, "Gbit/s");
  setFigure(f, "throughput.stunnel.4", 4, "Gbit/s");
  setFigure(f, "throughput.hbone.4", 1, "Gbit/s");
  setFigure(f, "latency.stunnel.p50", 100, "µs");
  setFigure(f, "latency.hbone.p50", 120, "µs");
  setFigure(f, "latency.stunnel.p99", 100, "µs");
  setFigure(f, "latency.hbone.p99", 121, "µs");
  setFigure(f, "scale.enrollSeconds", 12, "s");
  setFigure(f, "connrate.hbone", new Error("ztunnel not usable: exited 1\nstack"), "conn/s");
  setFigure(f, "connrate.raw", 1000, "conn/s");
  return f;
}

const byFigure = (name: string): Target => TARGETS.find((t) => t.figure === name)!;

describe("targets", () => {
  it("ratio targets: >= passes at or above the goal, <= passes at or below it", () => {
    const f = figures();
    expect(evaluate(f, byFigure("throughput.hbone.1"))).toMatchObject({ value: 1.25, verdict: "PASS" });
    expect(evaluate(f, byFigure("throughput.hbone.4"))).toMatchObject({ value: 0.25, verdict: "MISS" });
    expect(evaluate(f, byFigure("latency.hbone.p50"))).toMatchObject({ value: 1.2, verdict: "PASS" });
    expect(evaluate(f, byFigure("latency.hbone.p99")).verdict).toBe("MISS");
  });

  it("absolute targets compare the figure itself", () => {
    expect(evaluate(figures(), byFigure("scale.enrollSeconds"))).toMatchObject({ value: 12, verdict: "MISS" });
  });

  it("an unavailable or missing figure gives n/a with the reason, never PASS", () => {
    const f = figures();
    expect(evaluate(f, byFigure("connrate.hbone"))).toMatchObject({ verdict: "n/a", reason: "connrate.hbone unavailable: ztunnel not usable: exited 1" });
    expect(evaluate(f, byFigure("throughput.hbone.4pods"))).toMatchObject({ verdict: "n/a", reason: "throughput.hbone.4pods not measured in this run" });
    setFigure(f, "connrate.hbone", 900, "conn/s");
    setFigure(f, "connrate.raw", 0, "conn/s");
    expect(evaluate(f, byFigure("connrate.hbone")).verdict).toBe("n/a");
    expect(ratio(f, "connrate.hbone", "connrate.raw")).toBeUndefined();
  });

  it("covers every target of issue 10", () => {
    expect(TARGETS.map((t) => `${t.op}${t.goal}`)).toEqual([">=1", ">=1", ">=1", "<=1.2", "<=1.2", ">=0.5", "<=10", "<=300", "<=20", "<=100"]);
  });
});

describe("markdown", () => {
  it("targets table: one row per target with measured, reference, ratio, goal and verdict", () => {
    const lines = renderTargetsTable(figures()).split("\n");
    expect(lines).toHaveLength(2 + TARGETS.length);
    expect(lines[2]).toBe("| throughput, 1 stream: HBONE / stunnel | 2.50 Gbit/s | 2.00 Gbit/s | 1.25× | >= 1× | **PASS** |");
    expect(lines.find((l) => l.startsWith("| 1,000 pods"))).toBe("| 1,000 pods enrolled, all listeners up on every worker | 12.0 s | — | 12.0 | <= 10 | **MISS** |");
    expect(lines.find((l) => l.startsWith("| new connections"))).toContain("unavailable: ztunnel not usable: exited 1");
    // Every row has the same number of cells (no stray pipe from a reason text).
    const cells = (l: string): number => l.split(/(?<!\\)\|/).length;
    expect(new Set(lines.map(cells)).size).toBe(1);
  });

  it("a pipe in an unavailable reason is escaped", () => {
    const f: Figures = {};
    setFigure(f, "scale.rssMiB", new Error("a | b"), "MiB");
    expect(renderTargetsTable(f)).toContain("a \\| b");
  });

  it("info ratios and the whole report carry the machine and load", () => {
    expect(renderInfoRatios(figures())).toContain("| throughput, 1 stream: HBONE / raw | 0.25× |");
    const md = renderMarkdown({ startedAt: "2026-11-24T19:00:00Z", revision: "abc1234", durationS: 10, quick: false, machine, figures: figures(), notes: ["noisy"], chart: "chart.png" });
    expect(md).toContain("Machine: AMD EPYC, 2 cores");
    expect(md).toContain("Load average (1/5/15 min) at start 4.20 / 4.50 / 4.70, at end ?");
    expect(md).toContain("![throughput and latency](chart.png)");
    expect(md).toContain("- noisy");
    expect(md).toContain("code at abc1234.");
  });
});

describe("chart data", () => {
  it("one column per path, ? for what was not measured", () => {
    const d = chartData(figures());
    expect(d.throughput.split("\n")).toEqual(["# group raw stunnel hbone", '"1 stream" 10 2 2.5', '"4 streams" ? 4 1', '"4 pods x 1" ? ? ?', ""]);
    expect(d.latency).toContain('"p99" ? 100 121');
    expect(gnuplotScript("t.dat", "l.dat", "c.png", 'x "y"')).toContain(`set multiplot layout 1,2 title "x 'y'"`);
  });
});
