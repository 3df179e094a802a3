import type { Logger } from "../../shared/log.js";
import { emptyCounters, type Direction, type DirectionCounters, type Telemetry } from "../worker/messages.js";

// The main thread's view of every worker's traffic: counters summed over workers, and each
// access record written to the `access` log scope as it arrives.

export class TelemetrySink {
  readonly totals: Record<Direction, DirectionCounters> = { outbound: emptyCounters(), inbound: emptyCounters() };

  constructor(private readonly accessLog: Logger) {}

  add(worker: number, t: Telemetry): void {
    for (const dir of ["outbound", "inbound"] as const) {
      const into = this.totals[dir];
      const from = t.counters[dir];
      into.opened += from.opened;
      into.closed += from.closed;
      into.failed += from.failed;
      into.bytesSent += from.bytesSent;
      into.bytesReceived += from.bytesReceived;
    }
    for (const rec of t.access) this.accessLog.info({ ...rec, worker }, "connection complete");
  }
}
