import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";

export interface RetryQueueOptions {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  /** First retry delay; doubles per consecutive failure of the same key. */
  baseDelayMs: number;
  /** Cap of the retry delay. */
  maxDelayMs: number;
  /** Keys processed at the same time (never the same key twice). */
  concurrency: number;
}

/**
 * A work queue keyed by pod uid, as Kubernetes controllers use: a key queued while waiting is
 * queued once; a key queued while it is being processed runs again afterwards; a failure
 * re-queues the key with capped exponential backoff; a success resets its backoff. The work
 * function must be idempotent (it reads the current state, not the event that queued it).
 */
export class RetryQueue {
  private readonly waiting = new Set<string>();
  private readonly active = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly idleWaiters: (() => void)[] = [];
  private stopped = false;
  private readonly log: Logger;

  constructor(
    private readonly work: (key: string) => Promise<void>,
    private readonly opts: RetryQueueOptions,
    private readonly onResult: (key: string, ok: boolean, err?: unknown) => void = () => {},
  ) {
    this.log = opts.log ?? logger("enroll-queue");
  }

  add(key: string): void {
    if (this.stopped) return;
    const t = this.timers.get(key);
    if (t) {
      // A fresh event overrides a pending backoff: the state may have changed for the better.
      clearTimeout(t);
      this.timers.delete(key);
    }
    if (this.active.has(key)) this.dirty.add(key);
    else this.waiting.add(key);
    this.pump();
  }

  /** Delay before retry number `attempt` (1-based). */
  delayFor(attempt: number): number {
    return Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** Math.min(attempt - 1, 30));
  }

  /** Keys waiting for a backoff timer. */
  get backingOff(): string[] {
    return [...this.timers.keys()];
  }

  /** Resolves when nothing is queued or running (backoff timers may still be armed). */
  async idle(): Promise<void> {
    if (this.waiting.size === 0 && this.active.size === 0) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.waiting.clear();
    this.dirty.clear();
    await this.idle();
  }

  private pump(): void {
    while (!this.stopped && this.active.size < this.opts.concurrency) {
      const next = this.waiting.values().next();
      if (next.done) break;
      const key = next.value;
      this.waiting.delete(key);
      this.active.add(key);
      void this.process(key);
    }
    if (this.waiting.size === 0 && this.active.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async process(key: string): Promise<void> {
    let failed: unknown;
    let ok = true;
    try {
      await this.work(key);
    } catch (err) {
      ok = false;
      failed = err;
    }
    this.active.delete(key);
    this.onResult(key, ok, failed);
    if (ok) {
      this.failures.delete(key);
    } else if (!this.stopped && !this.dirty.has(key)) {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      const delay = this.delayFor(n);
      this.log.warn({ key, attempt: n, retryInMs: delay, err: errorMessage(failed) }, "reconcile failed; will retry");
      this.timers.set(
        key,
        setTimeout(() => {
          this.timers.delete(key);
          this.add(key);
        }, delay),
      );
    }
    if (this.dirty.delete(key)) this.waiting.add(key);
    this.pump();
  }
}
