import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import { emptyCounters, type AccessRecord, type CounterDelta, type Direction, type DirectionCounters, type Telemetry } from "./messages.js";

// Counters and access-log records of one worker, flushed to the main thread at least every
// interval and soon after a connection closes (coalesced into one message per turn), so
// metrics and logs aggregate every worker. The worker's event-loop lag rides along.

export class WorkerTelemetry {
  private delta: { outbound: DirectionCounters; inbound: DirectionCounters; accepted: number } = fresh();
  private access: AccessRecord[] = [];
  private activeConns = 0;
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Immediate | undefined;
  private readonly lag: IntervalHistogram;

  constructor(
    private readonly post: (t: Telemetry) => void,
    intervalMs: number,
  ) {
    this.lag = monitorEventLoopDelay({ resolution: 20 });
    this.lag.enable();
    this.timer = setInterval(() => this.flush(), intervalMs);
    this.timer.unref();
  }

  accepted(): void {
    this.delta.accepted++;
  }

  opened(dir: Direction): void {
    this.delta[dir].opened++;
    this.activeConns++;
  }

  /** A connection ended (ok or not); its record goes out with the next flush, within a turn. */
  closed(dir: Direction, bytesSent: number, bytesReceived: number, failed: boolean, record: AccessRecord): void {
    const c = this.delta[dir];
    c.closed++;
    if (failed) c.failed++;
    c.bytesSent += bytesSent;
    c.bytesReceived += bytesReceived;
    this.activeConns--;
    this.access.push(record);
    this.soon ??= setImmediate(() => this.flush());
  }

  get active(): number {
    return this.activeConns;
  }

  flush(): void {
    if (this.soon !== undefined) clearImmediate(this.soon);
    this.soon = undefined;
    const counters: CounterDelta = this.delta;
    this.delta = fresh();
    const access = this.access;
    this.access = [];
    // max over the interval: the worst stall a connection of this worker saw.
    const eventLoopLagMs = this.lag.count > 0 ? this.lag.max / 1e6 : 0;
    this.lag.reset();
    this.post({ counters, access, active: this.activeConns, eventLoopLagMs: Math.round(eventLoopLagMs * 100) / 100 });
  }

  close(): void {
    clearInterval(this.timer);
    this.flush();
    this.lag.disable();
  }
}

function fresh(): { outbound: DirectionCounters; inbound: DirectionCounters; accepted: number } {
  return { outbound: emptyCounters(), inbound: emptyCounters(), accepted: 0 };
}
