import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import type { MetricsDelta, SeriesDelta } from "./accumulator.js";
import { TRAFFIC_LABEL_NAMES, type TrafficLabelName } from "./labels.js";

// Main-thread side: ztunnel's Prometheus registry (DESIGN §9) with Istio's metric names. Traffic
// counters only ever grow by what workers flushed (apply), so every worker's connections land
// in one set of series; workload-manager gauges and counters are set by the main thread.

type LabelObject = Partial<Record<TrafficLabelName, string>>;

export interface ZtunnelMetricsOptions {
  /** Node process metrics (CPU, memory, event loop, fds). Off by default for tests. */
  readonly defaultMetrics?: boolean;
  /** Register into this registry instead of a fresh one. */
  readonly registry?: Registry;
}

export class ZtunnelMetrics {
  readonly registry: Registry;
  readonly connectionsOpened: Counter<TrafficLabelName>;
  readonly connectionsClosed: Counter<TrafficLabelName>;
  readonly connectionsFailed: Counter<TrafficLabelName>;
  readonly sentBytes: Counter<TrafficLabelName>;
  readonly receivedBytes: Counter<TrafficLabelName>;
  readonly activeProxies: Gauge;
  readonly pendingProxies: Gauge;
  readonly proxiesStarted: Counter;
  readonly proxiesStopped: Counter;
  /** New connections refused by the fd budget, by reason (proxy/budget.ts ShedReason). */
  readonly connectionsShed: Counter<"reason">;
  /** Times a worker found the process out of file descriptors (EMFILE/ENFILE). */
  readonly fdExhausted: Counter;
  /** Plaintext connections by the relay that carried them, and why JS (proxy/plain-relay.ts). */
  readonly plaintextRelays: Counter<"relay" | "reason">;
  /** Series a worker sent that were malformed and dropped (should stay 0). */
  rejectedSeries = 0;

  constructor(opts: ZtunnelMetricsOptions = {}) {
    this.registry = opts.registry ?? new Registry();
    const registers = [this.registry];
    const labelNames = TRAFFIC_LABEL_NAMES;
    const traffic = (name: string, help: string): Counter<TrafficLabelName> => new Counter({ name, help, labelNames, registers });
    this.connectionsOpened = traffic("istio_tcp_connections_opened_total", "The total number of TCP connections opened");
    this.connectionsClosed = traffic("istio_tcp_connections_closed_total", "The total number of TCP connections closed");
    this.connectionsFailed = traffic("istio_tcp_connections_failed_total", "The total number of TCP connections that failed");
    this.sentBytes = traffic("istio_tcp_sent_bytes_total", "The size of total bytes sent during response in case of a TCP connection");
    this.receivedBytes = traffic("istio_tcp_received_bytes_total", "The size of total bytes received during request in case of a TCP connection");
    this.activeProxies = new Gauge({ name: "workload_manager_active_proxy_count", help: "The total number current workloads with active proxies", registers });
    this.pendingProxies = new Gauge({ name: "workload_manager_pending_proxy_count", help: "The total number current workloads with pending proxies", registers });
    this.proxiesStarted = new Counter({ name: "workload_manager_proxies_started_total", help: "The total number of proxies that were started", registers });
    this.proxiesStopped = new Counter({ name: "workload_manager_proxies_stopped_total", help: "The total number of proxies that were stopped", registers });
    this.connectionsShed = new Counter({ name: "ztunnel_connections_shed_total", help: "New connections refused to keep file descriptors for every pod, by reason", labelNames: ["reason"], registers });
    this.fdExhausted = new Counter({ name: "ztunnel_fd_exhausted_total", help: "Times ztunnel ran out of file descriptors (EMFILE/ENFILE)", registers });
    this.plaintextRelays = new Counter({
      name: "ztunnel_plaintext_relays_total",
      help: "Plaintext connections (passthrough, inbound 15006) by the relay that copied them: kernel (splice) or js, with why not the kernel",
      labelNames: ["relay", "reason"],
      registers,
    });
    if (opts.defaultMetrics === true) collectDefaultMetrics({ register: this.registry });
  }

  /** Adds one worker flush. Returns how many series were dropped as malformed. */
  apply(delta: MetricsDelta): number {
    let rejected = 0;
    for (const s of delta.series) {
      if (!wellFormed(s)) {
        rejected++;
        continue;
      }
      const labels: LabelObject = {};
      for (let i = 0; i < TRAFFIC_LABEL_NAMES.length; i++) labels[TRAFFIC_LABEL_NAMES[i] as TrafficLabelName] = s.labels[i];
      if (s.opened > 0) this.connectionsOpened.inc(labels, s.opened);
      if (s.closed > 0) this.connectionsClosed.inc(labels, s.closed);
      if (s.failed > 0) this.connectionsFailed.inc(labels, s.failed);
      if (s.sent > 0) this.sentBytes.inc(labels, s.sent);
      if (s.received > 0) this.receivedBytes.inc(labels, s.received);
    }
    this.rejectedSeries += rejected;
    return rejected;
  }

  setProxyCounts(active: number, pending: number): void {
    this.activeProxies.set(active);
    this.pendingProxies.set(pending);
  }

  proxyStarted(): void {
    this.proxiesStarted.inc();
  }

  proxyStopped(): void {
    this.proxiesStopped.inc();
  }

  /** The exposition text for /metrics. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

function wellFormed(s: SeriesDelta): boolean {
  if (!Array.isArray(s.labels) || s.labels.length !== TRAFFIC_LABEL_NAMES.length) return false;
  for (const v of s.labels) if (typeof v !== "string") return false;
  for (const n of [s.opened, s.closed, s.failed, s.sent, s.received]) if (typeof n !== "number" || !Number.isFinite(n) || n < 0) return false;
  return true;
}
