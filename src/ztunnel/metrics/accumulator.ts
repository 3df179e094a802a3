import { labelValues, NO_FLAGS, RESPONSE_FLAGS_INDEX, TRAFFIC_LABEL_NAMES, type TrafficLabels } from "./labels.js";

// Worker side of the traffic metrics: counter deltas per label set, accumulated in plain
// numbers and handed over as one structured-clone-friendly record per flush (every interval and
// soon after a connection closes). The main thread adds them into its registry, so totals
// aggregate every worker exactly. A connection looks its series up once, at open; the hot path
// (bytes) is two additions.

/** One label set's increments since the last flush. `labels` in TRAFFIC_LABEL_NAMES order. */
export interface SeriesDelta {
  readonly labels: readonly string[];
  readonly opened: number;
  readonly closed: number;
  readonly failed: number;
  /** istio_tcp_received_bytes_total: request direction, client → server. */
  readonly received: number;
  /** istio_tcp_sent_bytes_total: response direction, server → client. */
  readonly sent: number;
}

export interface MetricsDelta {
  readonly series: readonly SeriesDelta[];
}

class Series {
  opened = 0;
  closed = 0;
  failed = 0;
  received = 0;
  sent = 0;
  /** Open meters holding this series; it is dropped after a flush only when none do. */
  refs = 0;
  constructor(
    readonly key: string,
    readonly values: readonly string[],
  ) {}

  get dirty(): boolean {
    return this.opened !== 0 || this.closed !== 0 || this.failed !== 0 || this.received !== 0 || this.sent !== 0;
  }
}

export interface CloseOptions {
  /** Counts in istio_tcp_connections_failed_total as well. */
  readonly failed?: boolean;
  /** Response flag of the outcome (e.g. "DENY", "UF"); closed/failed are counted under it. */
  readonly responseFlags?: string;
}

/** One connection's handle on its series. */
export class ConnectionMeter {
  private closedAlready = false;

  /** @internal created by MetricsAccumulator.open() */
  constructor(
    private readonly acc: MetricsAccumulator,
    private readonly series: Series,
  ) {}

  /** Payload bytes since the last call: client → server, server → client. */
  add(clientToServer: number, serverToClient: number): void {
    // After close the series may have been dropped by a flush: look it up again.
    const s = this.closedAlready ? this.acc.seriesOf(this.series.values) : this.series;
    s.received += clientToServer;
    s.sent += serverToClient;
  }

  /** Idempotent; the connection's counters go out with the next flush (soon). */
  close(opts: CloseOptions = {}): void {
    if (this.closedAlready) return;
    this.closedAlready = true;
    const flags = opts.responseFlags === undefined || opts.responseFlags === "" ? NO_FLAGS : opts.responseFlags;
    const target = flags === this.series.values[RESPONSE_FLAGS_INDEX] ? this.series : this.acc.seriesOf(withFlags(this.series.values, flags));
    target.closed++;
    if (opts.failed === true) target.failed++;
    this.series.refs--;
    this.acc.onClose?.();
  }
}

export class MetricsAccumulator {
  private readonly series = new Map<string, Series>();
  private readonly byValues = new WeakMap<readonly string[], Series>();
  /** Called after every close (the flush loop uses it to flush within a turn). */
  onClose: (() => void) | undefined;

  /** Counts an opened connection and returns its meter. */
  open(labels: TrafficLabels): ConnectionMeter {
    const s = this.seriesOf(labelValues(labels));
    s.opened++;
    s.refs++;
    return new ConnectionMeter(this, s);
  }

  /** As open(), with the values in TRAFFIC_LABEL_NAMES order (e.g. from a LabelMemo). */
  openValues(values: readonly string[]): ConnectionMeter {
    // A memoized value array maps to its series without joining its key again (unless a flush
    // dropped that series meanwhile).
    let s = this.byValues.get(values);
    if (s === undefined || this.series.get(s.key) !== s) {
      s = this.seriesOf(values);
      this.byValues.set(values, s);
    }
    s.opened++;
    s.refs++;
    return new ConnectionMeter(this, s);
  }

  /** One-shot increments, for outcomes known all at once (e.g. refused before relaying). */
  add(labels: TrafficLabels, counts: Partial<Omit<SeriesDelta, "labels">>): void {
    const s = this.seriesOf(labelValues(labels));
    s.opened += counts.opened ?? 0;
    s.closed += counts.closed ?? 0;
    s.failed += counts.failed ?? 0;
    s.received += counts.received ?? 0;
    s.sent += counts.sent ?? 0;
    if ((counts.closed ?? 0) > 0) this.onClose?.();
  }

  /** Series with changes since the last flush; undefined when there are none. Resets them. */
  flush(): MetricsDelta | undefined {
    const out: SeriesDelta[] = [];
    for (const s of this.series.values()) {
      if (s.dirty) {
        out.push({ labels: s.values, opened: s.opened, closed: s.closed, failed: s.failed, received: s.received, sent: s.sent });
        s.opened = s.closed = s.failed = s.received = s.sent = 0;
      }
      if (s.refs <= 0) this.series.delete(s.key);
    }
    return out.length === 0 ? undefined : { series: out };
  }

  /** Label sets currently held (open connections or unflushed counts). */
  get size(): number {
    return this.series.size;
  }

  /** @internal */
  seriesOf(values: readonly string[]): Series {
    const key = values.join("\u0000");
    let s = this.series.get(key);
    if (s === undefined) {
      if (values.length !== TRAFFIC_LABEL_NAMES.length) throw new Error(`expected ${TRAFFIC_LABEL_NAMES.length} label values, got ${values.length}`);
      s = new Series(key, values);
      this.series.set(key, s);
    }
    return s;
  }
}

function withFlags(values: readonly string[], flags: string): string[] {
  const v = values.slice();
  v[RESPONSE_FLAGS_INDEX] = flags;
  return v;
}

export interface FlushLoop {
  /** Flush now (e.g. before the worker exits). */
  flushNow(): void;
  /** Stop the timer and flush what is left. */
  stop(): void;
}

/**
 * Posts the accumulator's deltas every `intervalMs` and soon after a connection closes: within
 * `closeFlushDelayMs` (0 = the same event-loop turn). Closes in that window coalesce into one
 * message; at thousands of short connections per second a message per close would cost more
 * than the connections themselves (a postMessage is a structured clone and a cross-thread wakeup).
 */
export function startFlushLoop(acc: MetricsAccumulator, post: (delta: MetricsDelta) => void, opts: { intervalMs?: number; closeFlushDelayMs?: number } = {}): FlushLoop {
  let soon: NodeJS.Timeout | NodeJS.Immediate | undefined;
  const delay = opts.closeFlushDelayMs ?? 0;
  const cancelSoon = (): void => {
    if (soon === undefined) return;
    if (delay > 0) clearTimeout(soon as NodeJS.Timeout);
    else clearImmediate(soon as NodeJS.Immediate);
    soon = undefined;
  };
  const flushNow = (): void => {
    cancelSoon();
    const d = acc.flush();
    if (d !== undefined) post(d);
  };
  const timer = setInterval(flushNow, opts.intervalMs ?? 1_000);
  timer.unref();
  acc.onClose = () => {
    if (soon !== undefined) return;
    if (delay > 0) {
      soon = setTimeout(flushNow, delay);
      soon.unref();
    } else {
      soon = setImmediate(flushNow);
    }
  };
  return {
    flushNow,
    stop: () => {
      clearInterval(timer);
      acc.onClose = undefined;
      flushNow();
    },
  };
}
