import { Counter, Histogram, type Registry } from "prom-client";

// istio_dns_* with ztunnel's labels (src/dns/metrics.rs): request_query_type (lower case),
// request_protocol (udp/tcp), source_canonical_service, source_canonical_revision. Workers
// count into a DnsMetricsAccumulator and ship deltas with their telemetry; the main thread adds
// them into its registry (DnsMetrics), so totals aggregate every worker.

export const DNS_LABEL_NAMES = ["request_query_type", "request_protocol", "source_canonical_service", "source_canonical_revision"] as const;
type DnsLabelName = (typeof DNS_LABEL_NAMES)[number];

/** ztunnel's buckets for istio_dns_upstream_request_duration_seconds. */
export const DNS_DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.1, 1, 5];

export interface DnsLabels {
  readonly queryType: string;
  readonly protocol: "udp" | "tcp";
  readonly canonicalService: string;
  readonly canonicalRevision: string;
}

export interface DnsSeriesDelta {
  /** In DNS_LABEL_NAMES order. */
  readonly labels: readonly string[];
  readonly requests: number;
  readonly upstreamRequests: number;
  readonly upstreamFailures: number;
  /** Seconds of each finished upstream request. */
  readonly durations: readonly number[];
}

export interface DnsMetricsDelta {
  readonly series: readonly DnsSeriesDelta[];
}

interface Series {
  labels: string[];
  requests: number;
  upstreamRequests: number;
  upstreamFailures: number;
  durations: number[];
}

/** Worker side. */
export class DnsMetricsAccumulator {
  private series = new Map<string, Series>();

  private of(l: DnsLabels): Series {
    const labels = [l.queryType, l.protocol, l.canonicalService, l.canonicalRevision];
    const key = labels.join("\u0000");
    let s = this.series.get(key);
    if (s === undefined) {
      s = { labels, requests: 0, upstreamRequests: 0, upstreamFailures: 0, durations: [] };
      this.series.set(key, s);
    }
    return s;
  }

  request(l: DnsLabels): void {
    this.of(l).requests++;
  }

  upstreamRequest(l: DnsLabels): void {
    this.of(l).upstreamRequests++;
  }

  upstreamDone(l: DnsLabels, seconds: number, failed: boolean): void {
    const s = this.of(l);
    s.durations.push(seconds);
    if (failed) s.upstreamFailures++;
  }

  /** Everything since the last flush; undefined when nothing happened. */
  flush(): DnsMetricsDelta | undefined {
    if (this.series.size === 0) return undefined;
    const series = [...this.series.values()];
    this.series = new Map();
    return { series };
  }
}

/** Main-thread side: the four metrics in ztunnel's registry. */
export class DnsMetrics {
  readonly requests: Counter<DnsLabelName>;
  readonly upstreamRequests: Counter<DnsLabelName>;
  readonly upstreamFailures: Counter<DnsLabelName>;
  readonly upstreamDuration: Histogram<DnsLabelName>;
  rejectedSeries = 0;

  constructor(registry: Registry) {
    const registers = [registry];
    const labelNames = DNS_LABEL_NAMES;
    this.requests = new Counter({ name: "istio_dns_requests_total", help: "Total number of DNS requests (unstable)", labelNames, registers });
    this.upstreamRequests = new Counter({ name: "istio_dns_upstream_requests_total", help: "Total number of DNS requests forwarded to upstream (unstable)", labelNames, registers });
    this.upstreamFailures = new Counter({ name: "istio_dns_upstream_failures_total", help: "Total number of DNS requests that failed to forward upstream (unstable)", labelNames, registers });
    this.upstreamDuration = new Histogram({
      name: "istio_dns_upstream_request_duration_seconds",
      help: "Total time in seconds Istio takes to get DNS response from upstream (unstable)",
      labelNames,
      buckets: DNS_DURATION_BUCKETS,
      registers,
    });
  }

  apply(delta: DnsMetricsDelta): void {
    for (const s of delta.series) {
      if (!wellFormed(s)) {
        this.rejectedSeries++;
        continue;
      }
      const labels: Partial<Record<DnsLabelName, string>> = {};
      DNS_LABEL_NAMES.forEach((n, i) => (labels[n] = s.labels[i]));
      if (s.requests > 0) this.requests.inc(labels, s.requests);
      if (s.upstreamRequests > 0) this.upstreamRequests.inc(labels, s.upstreamRequests);
      if (s.upstreamFailures > 0) this.upstreamFailures.inc(labels, s.upstreamFailures);
      for (const d of s.durations) this.upstreamDuration.observe(labels, d);
    }
  }
}

function wellFormed(s: DnsSeriesDelta): boolean {
  if (!Array.isArray(s.labels) || s.labels.length !== DNS_LABEL_NAMES.length || !s.labels.every((v) => typeof v === "string")) return false;
  const counts = [s.requests, s.upstreamRequests, s.upstreamFailures];
  if (!counts.every((n) => typeof n === "number" && Number.isFinite(n) && n >= 0)) return false;
  return Array.isArray(s.durations) && s.durations.every((d) => typeof d === "number" && Number.isFinite(d) && d >= 0);
}
