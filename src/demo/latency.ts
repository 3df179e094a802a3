import { formatPodStart, histogramSummary, POD_START_HISTOGRAM, POD_START_LABEL, type HistogramSummary } from "../cli/histogram.js";
import { httpCall } from "../cli/http.js";
import { errorMessage } from "../shared/errors.js";
import { DemoError } from "./apps.js";
import { MESH_NAMESPACE, nodeName } from "./layout.js";
import type { DemoRun } from "./run.js";

// Pod start latency as the agent measures it (CNI ADD received → ztunnel's Ack, histogram
// istio_cni_pod_ready_seconds), read from each node's agent /metrics and summarised exactly as
// `ambientctl status` does (p50/p99 estimated from the buckets, as PromQL would).

/** How long the agents get to record the last Ack after ztunnel serves every pod. */
const WAIT_MS = 10_000;

async function agentSummary(run: DemoRun, n: number): Promise<HistogramSummary | string> {
  const t = run.nodeTarget(n);
  try {
    const r = await httpCall({ url: t.agent, netns: t.netns }, "/metrics", "GET", 2_000);
    if (r.status !== 200) return `agent /metrics answered ${r.status}`;
    return histogramSummary(r.body, POD_START_HISTOGRAM) ?? `agent /metrics has no ${POD_START_HISTOGRAM}`;
  } catch (err) {
    return `agent /metrics: ${errorMessage(err)}`;
  }
}

/**
 * One line per node: "node0: p50 12ms p99 30ms over 2 pods". Waits (bounded) until each agent
 * has counted every enrolled pod of its node; fails naming the node and what it saw otherwise.
 */
export async function podStartLatency(run: DemoRun): Promise<string> {
  const lines: string[] = [`${POD_START_LABEL}, from each node agent's ${POD_START_HISTOGRAM} (p50/p99 estimated from its buckets):`];
  for (let n = 0; n < 2; n++) {
    const want = run.pods.filter((p) => p.node === n && p.namespace === MESH_NAMESPACE).length;
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      run.check();
      const s = await agentSummary(run, n);
      if (typeof s !== "string" && s.count >= want) {
        lines.push(`${nodeName(n)}: ${formatPodStart(s)}`);
        break;
      }
      if (Date.now() > deadline) {
        const saw = typeof s === "string" ? s : `${s.count} of ${want} pods counted`;
        throw new DemoError(`${nodeName(n)}: the agent did not report the start latency of its ${want} enrolled pods within ${WAIT_MS / 1000} s (${saw})`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return lines.join("\n");
}
