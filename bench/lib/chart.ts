import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { isMeasured, type Figures } from "./figures.js";

const exec = promisify(execFile);

// PNG chart of the pod-to-pod figures, rendered by gnuplot from data files kept next to it
// (so the chart can be redrawn or re-styled without re-running the bench).

// The floor paths sit between stunnel and HBONE so a reader sees how far HBONE is from what Node
// itself costs on the same path (bench/floor/relay.ts).
const PATHS = ["raw", "stunnel", "nodetls", "nodetcp", "hbone"] as const;
const TITLES: Record<(typeof PATHS)[number], string> = {
  raw: "raw TCP",
  stunnel: "stunnel two-hop",
  nodetls: "Node floor, TLS",
  nodetcp: "Node floor, TCP",
  hbone: "HBONE (ztunnel)",
};

/** gnuplot's plot clause: one clustered bar per path, in PATHS order (column 2 is the first path). */
function plotClause(file: string): string {
  return PATHS.map((p, i) => `${i === 0 ? `"${file}" using 2:xtic(1)` : `"" using ${i + 2}`} title "${TITLES[p]}"`).join(", ");
}

function v(figures: Figures, name: string): string {
  const f = figures[name];
  return isMeasured(f) ? String(f.value) : "?";
}

/** Data files: one row per group, one column per path ("?" = not measured). */
export function chartData(figures: Figures): { throughput: string; latency: string } {
  const header = `# group ${PATHS.join(" ")}`;
  const throughput = [
    header,
    `"1 stream" ${PATHS.map((p) => v(figures, `throughput.${p}.1`)).join(" ")}`,
    `"4 streams" ${PATHS.map((p) => v(figures, `throughput.${p}.4`)).join(" ")}`,
    `"4 pods x 1" ${PATHS.map((p) => (p === "hbone" ? v(figures, "throughput.hbone.4pods") : "?")).join(" ")}`,
  ];
  const latency = [header, ...["p50", "p99"].map((q) => `"${q}" ${PATHS.map((p) => v(figures, `latency.${p}.${q}`)).join(" ")}`)];
  return { throughput: throughput.join("\n") + "\n", latency: latency.join("\n") + "\n" };
}

/** The gnuplot script; a panel whose data file has no measured value is left out (gnuplot fails on it). */
export function gnuplotScript(throughputFile: string, latencyFile: string, pngFile: string, title: string, panels: { throughput: boolean; latency: boolean } = { throughput: true, latency: true }): string {
  const n = Number(panels.throughput) + Number(panels.latency);
  return [
    `set terminal pngcairo size 1200,500 font "sans,10"`,
    `set output "${pngFile}"`,
    `set datafile missing "?"`,
    `set style data histograms`,
    `set style histogram clustered gap 1`,
    `set style fill solid 0.8 border -1`,
    `set key top left`,
    `set grid ytics`,
    `set yrange [0:*]`,
    `set multiplot layout 1,${n} title "${title.replace(/"/g, "'")}"`,
    ...(panels.throughput
      ? [`set title "bulk throughput (iperf3), Gbit/s, higher is better"`, `plot ${plotClause(throughputFile)}`]
      : []),
    ...(panels.latency
      ? [`set title "1 KiB request/response round trip, µs, lower is better"`, `plot ${plotClause(latencyFile)}`]
      : []),
    `unset multiplot`,
    "",
  ].join("\n");
}

/** Writes the data files and the script into `dir` and renders chart.png; returns its name (undefined: nothing to chart). */
export async function renderChart(dir: string, figures: Figures, title: string): Promise<string | undefined> {
  const data = chartData(figures);
  const measured = (group: string): boolean => PATHS.some((p) => Object.keys(figures).some((k) => k.startsWith(`${group}.${p}.`) && isMeasured(figures[k])));
  const panels = { throughput: measured("throughput"), latency: measured("latency") };
  if (!panels.throughput && !panels.latency) return undefined;
  await writeFile(join(dir, "throughput.dat"), data.throughput);
  await writeFile(join(dir, "latency.dat"), data.latency);
  await writeFile(join(dir, "chart.gp"), gnuplotScript("throughput.dat", "latency.dat", "chart.png", title, panels));
  await exec("gnuplot", ["chart.gp"], { cwd: dir, timeout: 30_000 });
  return "chart.png";
}
