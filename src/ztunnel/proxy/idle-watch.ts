// Idle timeouts of many relays with the same length, watched by one coarse timer instead of a
// Node timer per relay. A timer per connection is two objects and a timer-list insert and
// removal for every short connection, and almost none of them ever fire. Here a relay is one
// entry in a set, swept every tick (an eighth of the length, between 5 ms and 1 s) by a
// single unref'd interval that runs only while entries exist; a relay idle for the length is
// told at the next sweep, so a timeout fires up to one tick late.

export interface IdleWatched {
  /** When bytes last moved (Date.now()). */
  readonly lastActivityMs: number;
  /** Idle for the whole length: end it. */
  idleExpired(): void;
}

export class IdleWatch {
  private static readonly byLength = new Map<number, IdleWatch>();
  private readonly entries = new Set<IdleWatched>();
  private timer: NodeJS.Timeout | undefined;
  readonly tickMs: number;

  /** The shared watch for timeouts of `lengthMs`. */
  static of(lengthMs: number): IdleWatch {
    let w = IdleWatch.byLength.get(lengthMs);
    if (w === undefined) {
      w = new IdleWatch(lengthMs);
      IdleWatch.byLength.set(lengthMs, w);
    }
    return w;
  }

  private constructor(readonly lengthMs: number) {
    this.tickMs = Math.max(5, Math.min(1_000, Math.floor(lengthMs / 8)));
  }

  get size(): number {
    return this.entries.size;
  }

  add(e: IdleWatched): void {
    this.entries.add(e);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.sweep(), this.tickMs);
      this.timer.unref();
    }
  }

  delete(e: IdleWatched): void {
    this.entries.delete(e);
  }

  private sweep(): void {
    const now = Date.now();
    for (const e of this.entries) {
      if (now - e.lastActivityMs < this.lengthMs) continue;
      this.entries.delete(e);
      e.idleExpired();
    }
    if (this.entries.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
