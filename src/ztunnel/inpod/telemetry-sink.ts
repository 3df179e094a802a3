import type { AccessLog } from "../accesslog/access-log.js";
import type { ZtunnelMetrics } from "../metrics/registry.js";
import { TRAFFIC_LABEL_NAMES } from "../metrics/labels.js";
import { emptyCounters, type Direction, type DirectionCounters, type Telemetry } from "../worker/messages.js";

// The main thread's side of every worker's telemetry: metric deltas added into the one
// Prometheus registry (so series aggregate all workers), one access-log line per finished
// connection, and per-direction totals for /config_dump (source reporter = outbound,
// destination reporter = inbound).

const REPORTER = TRAFFIC_LABEL_NAMES.indexOf("reporter");

export class TelemetrySink {
  readonly totals: Record<Direction, DirectionCounters> = { outbound: emptyCounters(), inbound: emptyCounters() };

  constructor(
    private readonly metrics: ZtunnelMetrics,
    private readonly accessLog: AccessLog,
  ) {}

  add(worker: number, t: Telemetry): void {
    if (t.metrics !== undefined) {
      this.metrics.apply(t.metrics);
      for (const s of t.metrics.series) {
        const into = this.totals[s.labels[REPORTER] === "source" ? "outbound" : "inbound"];
        into.opened += s.opened;
        into.closed += s.closed;
        into.failed += s.failed;
        // From the client's side of the connection: sent = request direction.
        into.bytesSent += s.received;
        into.bytesReceived += s.sent;
      }
    }
    for (const summary of t.access) this.accessLog.emit(summary, worker);
    if (t.limits !== undefined) {
      for (const [reason, n] of Object.entries(t.limits.shed)) if (n > 0) this.metrics.connectionsShed.inc({ reason }, n);
      if (t.limits.fdExhausted > 0) this.metrics.fdExhausted.inc(t.limits.fdExhausted);
    }
    if (t.relays !== undefined) {
      if (t.relays.kernel > 0) this.metrics.plaintextRelays.inc({ relay: "kernel", reason: "" }, t.relays.kernel);
      for (const [reason, n] of Object.entries(t.relays.js)) if (n !== undefined && n > 0) this.metrics.plaintextRelays.inc({ relay: "js", reason }, n);
    }
  }
}
