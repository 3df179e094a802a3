import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { ProxyError } from "./errors.js";
import { IdleWatch, type IdleWatched } from "./idle-watch.js";
import { batch, CorkedWriter } from "./h2/corked-writer.js";
import { ErrorCode } from "./h2/frames.js";
import { H2Stream } from "./h2/stream.js";

// Bidirectional byte copy between two duplex endpoints (a TCP socket and an HTTP/2 stream, or
// two sockets for passthrough). Backpressure is explicit both ways: once a destination queues
// MAX_QUEUED_BYTES, its source pauses until 'drain', so memory per connection stays bounded.
// A FIN/END_STREAM on one side ends the other side's writable half; the connection completes
// when both directions have ended, or is cut by a bounded half-close timer. Errors propagate
// as resets (TCP RST / RST_STREAM CONNECT_ERROR); clean ends never become resets.

/** What the relay copies between: a socket, or a stream of our HBONE HTTP/2 layer. */
export type Endpoint = Duplex | H2Stream;

export interface RelayOptions {
  /** No bytes either way for this long closes both sides. 0 = never. */
  idleTimeoutMs?: number;
  /** After one direction has ended, how long the other may stay open. 0 = unbounded. */
  halfCloseTimeoutMs?: number;
}

export type RelayEnd = "complete" | "idle-timeout" | "half-close-timeout" | "error" | "aborted";

export interface RelayResult {
  readonly end: RelayEnd;
  /** Bytes read from `a` and written to `b`. */
  readonly bytesAtoB: number;
  /** Bytes read from `b` and written to `a`. */
  readonly bytesBtoA: number;
  readonly durationMs: number;
  readonly error: Error | undefined;
}

export const DEFAULT_IDLE_MS = 60 * 60_000;
/**
 * Bytes one direction may queue in our buffers before its source is paused. Per connection
 * and direction, so 1,000 bulk connections hold at most ~1 GiB in the worst case; idle ones
 * hold nothing.
 */
export const MAX_QUEUED_BYTES = 512 * 1024;
export const DEFAULT_HALF_CLOSE_MS = 60_000;

interface Side {
  readonly s: Endpoint;
  /** Propagates this side's end of input to the other side (once). */
  onEnd: () => void;
  readEnded: boolean;
  writeFinished: boolean;
  closed: boolean;
}

export class Relay implements IdleWatched {
  /** The result once both directions ended (or the relay was cut). Made on first use. */
  private donePromise: Promise<RelayResult> | undefined;
  private result: RelayResult | undefined;
  private bytesAtoB = 0;
  private bytesBtoA = 0;
  private readonly started = Date.now();
  private lastActivity = Date.now();
  /** Watches this relay's idle timeout with the others of the same length (none when 0). */
  private readonly idleWatch: IdleWatch | undefined;
  private halfTimer: NodeJS.Timeout | undefined;
  private finished = false;
  private resolve: ((r: RelayResult) => void) | undefined;
  private readonly sa: Side;
  private readonly sb: Side;
  private readonly idleMs: number;
  private readonly halfCloseMs: number;

  /** `onDone` runs once with the result (a caller that needs no promise passes it). */
  constructor(a: Endpoint, b: Endpoint, opts: RelayOptions = {}, private readonly onDone?: (r: RelayResult) => void) {
    this.idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_MS;
    this.halfCloseMs = opts.halfCloseTimeoutMs ?? DEFAULT_HALF_CLOSE_MS;
    this.sa = { s: a, onEnd: noop, readEnded: false, writeFinished: false, closed: false };
    this.sb = { s: b, onEnd: noop, readEnded: false, writeFinished: false, closed: false };
    // Without half-open, a FIN from one peer would end our write side to it as well.
    if (a instanceof Socket) a.allowHalfOpen = true;
    if (b instanceof Socket) b.allowHalfOpen = true;
    this.pump(this.sa, this.sb, true);
    this.pump(this.sb, this.sa, false);
    this.watch(this.sa, this.sb);
    this.watch(this.sb, this.sa);
    this.idleWatch = this.idleMs > 0 ? IdleWatch.of(this.idleMs) : undefined;
    this.idleWatch?.add(this);
  }

  get done(): Promise<RelayResult> {
    if (this.donePromise === undefined) {
      const r = this.result;
      this.donePromise = r !== undefined ? Promise.resolve(r) : new Promise((resolve) => (this.resolve = resolve));
    }
    return this.donePromise;
  }

  /** Bytes sitting in our user-space buffers (both directions): the backpressure bound. */
  buffered(): number {
    return this.sa.s.writableLength + this.sb.s.writableLength + this.sa.s.readableLength + this.sb.s.readableLength;
  }

  get counters(): { bytesAtoB: number; bytesBtoA: number } {
    return { bytesAtoB: this.bytesAtoB, bytesBtoA: this.bytesBtoA };
  }

  /** Cuts both sides now (pod removed, drain deadline passed). */
  abort(reason: Error = new Error("relay aborted")): void {
    this.finish("aborted", reason);
  }

  /** Copies `from` → `to`; `aToB` says which byte counter the direction adds to. */
  private pump(from: Side, to: Side, aToB: boolean): void {
    const src = from.s;
    const dst = to.s;
    let waiting = false;
    const onDrain = (): void => {
      waiting = false;
      src.resume();
    };
    // An HBONE stream hands us DATA as it arrives (one view per TLS read); writing each to the
    // socket on its own costs a syscall apiece. Corked until the event loop's check phase, the
    // chunks of one read leave in a single writev.
    const corked = dst instanceof Socket ? new CorkedWriter(dst) : undefined;
    const onData = (chunk: Buffer): void => {
      if (aToB) this.bytesAtoB += chunk.length;
      else this.bytesBtoA += chunk.length;
      this.lastActivity = Date.now();
      corked?.hold();
      const accepted = dst.write(chunk);
      // Pausing at a socket's 16 KiB high-water mark would stop and restart reading (two
      // epoll_ctl calls) for nearly every chunk; a wider bound keeps the pipe full at a known
      // cost. An HBONE stream says itself when its queue (unsent for lack of window) is full.
      const full = isH2Stream(dst) ? !accepted : dst.writableLength >= MAX_QUEUED_BYTES;
      if (full && !waiting) {
        waiting = true;
        src.pause();
        dst.once("drain", onDrain);
      }
    };
    // A socket read is a batch of its own (what it writes leaves when the handler returns); an
    // HBONE stream's DATA arrives inside its connection's batch already.
    src.on("data", isH2Stream(src) ? onData : (chunk: Buffer) => batch(onData, chunk));
    const onEnd = (): void => {
      if (this.finished || from.readEnded) return;
      from.readEnded = true;
      this.lastActivity = Date.now();
      // FIN → END_STREAM (or the reverse): end the other side once its queued bytes flush.
      if (!dst.writableEnded && !dst.destroyed) dst.end();
      this.armHalfClose();
      this.maybeComplete();
    };
    from.onEnd = onEnd;
    // 'end', 'finish' and 'close' come once per endpoint: plain listeners (a once() wrapper is
    // two more objects per event per connection) whose handlers are idempotent anyway.
    src.on("end", () => {
      if (!isH2Stream(src)) return onEnd();
      // A reset that arrives right behind END_STREAM must reach the peer as a reset (via
      // 'error'/'close'), never as a clean FIN: look one turn later.
      setImmediate(() => {
        if (src.rstCode !== undefined && src.rstCode !== ErrorCode.NO_ERROR) return;
        onEnd();
      });
    });
    // A paused socket still emits 'end' once its FIN is read and nothing is buffered: a client
    // that half-closes while its tunnel is being set up has ended before we listened.
    if (!isH2Stream(src) && src.readableEnded) queueMicrotask(onEnd);
  }

  private watch(side: Side, other: Side): void {
    const s = side.s;
    s.on("finish", () => {
      side.writeFinished = true;
      this.maybeComplete();
    });
    s.on("error", (err: Error) => this.finish("error", err, side, other));
    s.on("close", () => {
      if (side.closed) return;
      side.closed = true;
      if (this.finished) return;
      if (isH2Stream(s) && (s.rstCode === undefined || s.rstCode === ErrorCode.NO_ERROR)) {
        // Closed with NO_ERROR: END_STREAM both ways (the stream may close before our deferred
        // end runs), or the peer's RST_STREAM(NO_ERROR), "done, stop
        // sending". Either way: end the other side cleanly, forward nothing more to this one.
        side.onEnd();
        side.writeFinished = true;
        if (!other.readEnded) {
          other.readEnded = true;
          other.s.pause();
        }
        this.maybeComplete();
        return;
      }
      if (isCleanClose(side)) {
        this.maybeComplete();
        return;
      }
      this.finish("error", closeError(side.s), side, other);
    });
  }

  private maybeComplete(): void {
    const a = this.sa;
    const b = this.sb;
    if (a.readEnded && b.readEnded && a.writeFinished && b.writeFinished) this.finish("complete", undefined);
  }

  private armHalfClose(): void {
    if (this.halfTimer !== undefined || this.halfCloseMs <= 0 || this.finished) return;
    this.halfTimer = setTimeout(() => {
      this.finish("half-close-timeout", new ProxyError("HALF_CLOSE_TIMEOUT", `peer kept its half open for more than ${this.halfCloseMs} ms after the other side closed`));
    }, this.halfCloseMs);
    this.halfTimer.unref();
  }

  /** @internal IdleWatched */
  get lastActivityMs(): number {
    return this.lastActivity;
  }

  /** @internal IdleWatched: no bytes either way for idleMs. */
  idleExpired(): void {
    this.finish("idle-timeout", new ProxyError("IDLE_TIMEOUT", `no bytes in either direction for ${this.idleMs} ms`));
  }

  private finish(end: RelayEnd, error: Error | undefined, failed?: Side, other?: Side): void {
    if (this.finished) return;
    this.finished = true;
    this.idleWatch?.delete(this);
    clearTimeout(this.halfTimer);
    if (end === "complete") {
      for (const side of [this.sa, this.sb]) if (side.s instanceof Socket) side.s.destroy();
    } else if (end === "idle-timeout") {
      // Nothing is in flight, so both peers can be told with a clean FIN / END_STREAM.
      closeGracefully(this.sa.s);
      closeGracefully(this.sb.s);
    } else if (failed !== undefined && other !== undefined) {
      // The failing side is gone already; the peer learns of the failure as a reset.
      reset(other.s);
      if (!failed.s.destroyed) failed.s.destroy();
    } else {
      reset(this.sa.s);
      reset(this.sb.s);
    }
    const result: RelayResult = {
      end,
      bytesAtoB: this.bytesAtoB,
      bytesBtoA: this.bytesBtoA,
      durationMs: Date.now() - this.started,
      error,
    };
    this.result = result;
    this.resolve?.(result);
    this.onDone?.(result);
  }
}

/** Runs a relay to completion. */
export function relay(a: Endpoint, b: Endpoint, opts?: RelayOptions): Promise<RelayResult> {
  return new Relay(a, b, opts).done;
}

function isCleanClose(side: Side): boolean {
  return side.readEnded && !side.s.errored;
}

function closeError(s: Endpoint): Error {
  if (isH2Stream(s) && s.rstCode !== undefined && s.rstCode !== ErrorCode.NO_ERROR) {
    return new ProxyError("HBONE_STREAM_RESET", `HTTP/2 stream reset by peer (code ${s.rstCode})`);
  }
  return new Error("connection closed before both directions ended");
}

const GRACE_MS = 1_000;

function closeGracefully(s: Endpoint): void {
  if (s.destroyed) return;
  if (isH2Stream(s)) {
    if (!s.closed) s.close(ErrorCode.NO_ERROR);
    return;
  }
  s.end();
  // A peer that never answers our FIN does not keep the socket.
  setTimeout(() => s.destroy(), GRACE_MS).unref();
}

function reset(s: Endpoint): void {
  if (s.destroyed && !(isH2Stream(s))) return;
  if (isH2Stream(s)) {
    // RFC 9113 8.5: a TCP-level failure on the far side surfaces as CONNECT_ERROR.
    if (!s.closed) s.close(ErrorCode.CONNECT_ERROR);
    return;
  }
  if (s instanceof Socket) {
    try {
      s.resetAndDestroy();
    } catch {
      s.destroy(); // not a TCP handle (a TLS socket): no RST available
    }
    return;
  }
  s.destroy();
}

function noop(): void {}

function isH2Stream(s: Endpoint): s is H2Stream {
  return s instanceof H2Stream;
}
