import { rootLogger, type Logger } from "../../shared/log.js";
import { toAccessRecord, type ConnectionSummary } from "./record.js";

// Writes access records on the main thread: one pino JSON line per completed connection under
// scope `access`, at info on success and at warn (with the reason) on failure. Nothing is built
// when the level is disabled.

export const ACCESS_SCOPE = "access";

/** The `access` child of a logger (default: the process root logger). */
export function accessLogger(parent: Logger = rootLogger()): Logger {
  return parent.child({ scope: ACCESS_SCOPE });
}

export class AccessLog {
  constructor(private readonly log: Logger = accessLogger()) {}

  /** Whether a line of this outcome would be written (lets a producer skip building it). */
  wants(failed: boolean): boolean {
    return this.log.isLevelEnabled(failed ? "warn" : "info");
  }

  emit(summary: ConnectionSummary, worker?: number): void {
    const failed = summary.error !== undefined;
    if (!this.wants(failed)) return;
    const rec = toAccessRecord(summary);
    const line = worker === undefined ? rec : { ...rec, worker };
    if (failed) this.log.warn(line, "connection failed");
    else this.log.info(line, "connection complete");
  }
}
