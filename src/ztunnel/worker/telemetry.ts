import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import { rootLogger } from "../../shared/log.js";
import type { ConnectionSummary } from "../accesslog/record.js";
import { MetricsAccumulator, startFlushLoop, type FlushLoop, type MetricsDelta } from "../metrics/accumulator.js";
import type { DnsMetricsDelta } from "../dns/metrics.js";
import type { BudgetCounters } from "../proxy/budget.js";
import type { JsRelayReason, RelayCounts, RelayUsed } from "../proxy/plain-relay.js";
import type { Telemetry } from "./messages.js";

// A worker's telemetry toward the main thread: Istio metric deltas (MetricsAccumulator, flushed
// by startFlushLoop every interval and within a turn after a connection closes), the summaries
// of finished connections (access log) riding on the same message, and a status heartbeat
// (accepted, active, event-loop lag) every interval even when no traffic moved.

/** How soon after a connection closes its counters and access summary leave the worker. */
export const CLOSE_FLUSH_DELAY_MS = 50;

export interface WorkerTelemetryOptions {
  /** See CLOSE_FLUSH_DELAY_MS; 0 = within the same event-loop turn. */
  closeFlushDelayMs?: number;
  /**
   * Whether the main thread would write an access line for this outcome. Summaries nobody
   * logs are not shipped. Default: the level of this thread's root logger, which the main
   * thread keeps equal to its own.
   */
  wantsAccess?: (failed: boolean) => boolean;
  /** Budget counters since the last flush (shed connections, fd exhaustion). */
  limits?: () => BudgetCounters | undefined;
}

export class WorkerTelemetry {
  readonly metrics = new MetricsAccumulator();
  private access: ConnectionSummary[] = [];
  private acceptedSince = 0;
  private activeConns = 0;
  private readonly loop: FlushLoop;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly lag: IntervalHistogram;
  private readonly wantsAccess: (failed: boolean) => boolean;
  /** The DNS proxy's counts since the last flush; they ride on every telemetry message. */
  dnsSource: (() => DnsMetricsDelta | undefined) | undefined;
  private readonly limits: () => BudgetCounters | undefined;
  private relays: RelayCounts | undefined;

  constructor(
    private readonly post: (t: Telemetry) => void,
    intervalMs: number,
    opts: WorkerTelemetryOptions = {},
  ) {
    this.wantsAccess = opts.wantsAccess ?? ((failed) => rootLogger().isLevelEnabled(failed ? "warn" : "info"));
    this.limits = opts.limits ?? (() => undefined);
    this.lag = monitorEventLoopDelay({ resolution: 20 });
    this.lag.enable();
    this.loop = startFlushLoop(this.metrics, (d) => this.send(d), { intervalMs, closeFlushDelayMs: opts.closeFlushDelayMs ?? CLOSE_FLUSH_DELAY_MS });
    this.heartbeat = setInterval(() => this.send(undefined), intervalMs);
    this.heartbeat.unref();
  }

  accepted(): void {
    this.acceptedSince++;
  }

  opened(): void {
    this.activeConns++;
  }

  /** A connection ended: its summary goes out with the metric flush its meter's close triggers. */
  closed(summary: ConnectionSummary): void {
    this.closedLazily(summary.error !== undefined, () => summary);
  }

  /** As closed(), with the summary built only if the access log wants this outcome. */
  closedLazily(failed: boolean, summary: () => ConnectionSummary): void {
    this.activeConns--;
    if (this.wantsAccess(failed)) this.access.push(summary());
  }

  /** A plaintext connection started relaying (in the kernel, or in JS and why). */
  relayed(relay: RelayUsed, reason?: JsRelayReason): void {
    const c = (this.relays ??= { kernel: 0, js: {} });
    if (relay === "kernel") c.kernel++;
    else if (reason !== undefined) c.js[reason] = (c.js[reason] ?? 0) + 1;
  }

  get active(): number {
    return this.activeConns;
  }

  flush(): void {
    this.loop.flushNow();
    if (this.access.length > 0) this.send(undefined);
  }

  close(): void {
    clearInterval(this.heartbeat);
    this.loop.stop();
    this.send(undefined);
    this.lag.disable();
  }

  private send(metrics: MetricsDelta | undefined): void {
    const access = this.access;
    this.access = [];
    const accepted = this.acceptedSince;
    this.acceptedSince = 0;
    // max over the interval: the worst stall a connection of this worker saw.
    const lagMs = this.lag.count > 0 ? this.lag.max / 1e6 : 0;
    if (metrics === undefined) this.lag.reset();
    const dns = this.dnsSource?.();
    const limits = this.limits();
    const relays = this.relays;
    this.relays = undefined;
    this.post({
      metrics,
      access,
      accepted,
      active: this.activeConns,
      eventLoopLagMs: Math.round(lagMs * 100) / 100,
      ...(dns !== undefined ? { dns } : {}),
      ...(limits !== undefined ? { limits } : {}),
      ...(relays !== undefined ? { relays } : {}),
    });
  }
}
