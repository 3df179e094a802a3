// One coarse timer for many deadlines of the same length (e.g. "upstream connect within 10 s"
// per CONNECT). A Node timer per connection costs more than it looks: when a duration's last
// timer is cleared Node drops its list, and the next setTimeout of that duration builds a new
// one and re-arms the libuv timer. Here every deadline is an entry in one insertion-ordered
// set (equal lengths, so expiry order is insertion order) swept by a single unref'd interval
// that runs only while entries exist. A deadline fires up to one tick late.

export interface Deadline {
  /** Forget it (idempotent); its callback will not run. */
  cancel(): void;
}

interface Entry extends Deadline {
  readonly at: number;
  readonly fire: () => void;
}

export class Deadlines {
  private readonly entries = new Set<Entry>();
  private timer: NodeJS.Timeout | undefined;
  /** Sweep period: a fraction of the length, so lateness stays small relative to it. */
  readonly tickMs: number;

  constructor(
    readonly lengthMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tickMs = Math.max(5, Math.min(1_000, Math.floor(lengthMs / 8)));
  }

  get size(): number {
    return this.entries.size;
  }

  /** Calls `fire` once `lengthMs` have passed, unless cancelled first. */
  add(fire: () => void): Deadline {
    const entries = this.entries;
    const entry: Entry = {
      at: this.now() + this.lengthMs,
      fire,
      cancel: () => entries.delete(entry),
    };
    entries.add(entry);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.sweep(), this.tickMs);
      this.timer.unref();
    }
    return entry;
  }

  private sweep(): void {
    const now = this.now();
    for (const e of this.entries) {
      if (e.at > now) break;
      this.entries.delete(e);
      e.fire();
    }
    if (this.entries.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
