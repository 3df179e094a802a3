// Quantiles of a Prometheus histogram read from /metrics text, the way PromQL's
// histogram_quantile estimates them: find the bucket holding the rank, interpolate linearly.

export interface HistogramSummary {
  readonly count: number;
  /** Seconds; undefined when there are no observations. */
  readonly p50: number | undefined;
  readonly p99: number | undefined;
}

export function histogramSummary(metricsText: string, name: string): HistogramSummary | undefined {
  const buckets: { le: number; count: number }[] = [];
  const re = new RegExp(`^${name}_bucket\\{[^}]*le="([^"]+)"[^}]*\\}\\s+(\\S+)`, "gm");
  for (const m of metricsText.matchAll(re)) buckets.push({ le: m[1] === "+Inf" ? Infinity : Number(m[1]), count: Number(m[2]) });
  if (buckets.length === 0) return undefined;
  buckets.sort((a, b) => a.le - b.le);
  const count = buckets.at(-1)?.count ?? 0;
  return { count, p50: quantile(buckets, count, 0.5), p99: quantile(buckets, count, 0.99) };
}

function quantile(buckets: readonly { le: number; count: number }[], total: number, q: number): number | undefined {
  if (total === 0) return undefined;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      // Beyond the last finite bucket nothing better than its bound can be said.
      if (b.le === Infinity) return lower;
      return lower + ((b.le - lower) * (rank - below)) / Math.max(b.count - below, 1);
    }
    lower = b.le;
    below = b.count;
  }
  return lower;
}

/** The agent's pod start histogram (CNI ADD received → ztunnel Ack), as ambientctl status and the demo name it. */
export const POD_START_HISTOGRAM = "istio_cni_pod_ready_seconds";
export const POD_START_LABEL = "pod start (CNI ADD → ztunnel ack)";

/** "p50 12ms p99 30ms over 4 pods": one wording wherever pod start latency is shown. */
export function formatPodStart(s: HistogramSummary): string {
  const ms = (v: number | undefined): string => (v === undefined ? "-" : `${Math.round(v * 1000)}ms`);
  return `p50 ${ms(s.p50)} p99 ${ms(s.p99)} over ${s.count} pods`;
}
