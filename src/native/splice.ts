import type { Socket } from "node:net";
import {
  native,
  SPLICE_A_TO_B_ENDED,
  SPLICE_B_TO_A_ENDED,
  SPLICE_COMPLETE,
  SPLICE_ERROR,
  type Splicer,
} from "./binding.js";
import { errnoText, makeNativeError, type NativeError } from "./errors.js";

// Kernel-side relay between two TCP sockets (native/src/splice.c): splice() through a pipe per
// direction on the event loop, half-close kept (EOF on one side shuts down the other's write
// side), backpressure by waiting for writability. The relay owns its two fds, or borrows those
// of parked sockets (fromSockets with park); JS learns of each direction's end, the completion
// and a failure (then both peers were reset) through onEvent.

export interface SpliceCounts {
  /** Bytes read from a and written to b. */
  readonly aToB: number;
  /** Bytes read from b and written to a. */
  readonly bToA: number;
}

export type SpliceEvent =
  | { readonly t: "ended"; readonly direction: "aToB" | "bToA"; readonly counts: SpliceCounts }
  | { readonly t: "complete"; readonly counts: SpliceCounts }
  | { readonly t: "error"; readonly error: NativeError; readonly counts: SpliceCounts };

export interface SpliceStartOptions {
  /** Bytes already read from a that must reach b before anything spliced. */
  prefixAtoB?: Uint8Array;
  /** Bytes already read from b that must reach a first. */
  prefixBtoA?: Uint8Array;
  /**
   * Bytes asked of each direction's pipe (default: DEFAULT_PIPE_SIZE). Every pipe page counts
   * against the user's pipe-user-pages-soft, shared with all processes of that uid, so callers
   * relaying many connections budget this (proxy/budget.ts). The kernel may give less.
   */
  pipeSize?: number;
}

/** What a relay's pipes get when the caller does not say: one pipe round trip moves up to this. */
export const DEFAULT_PIPE_SIZE = 256 * 1024;

const EMPTY = new Uint8Array(0);

export class SpliceRelay {
  private closedFlag = false;
  private last: SpliceCounts = { aToB: 0, bToA: 0 };

  private constructor(private readonly splicer: Splicer) {}

  /** @internal Counts from an event; `ended` once the relay completed or failed. */
  settle(counts: SpliceCounts, ended: boolean): void {
    this.last = counts;
    if (ended) this.closedFlag = true;
  }

  /**
   * Starts relaying between two connected stream-socket fds. On success the relay owns both
   * (closes them when it ends); on a throw they stay the caller's.
   */
  static fromFds(fdA: number, fdB: number, onEvent: (e: SpliceEvent) => void, opts: SpliceStartOptions = {}): SpliceRelay {
    const box: { relay?: SpliceRelay } = {};
    const splicer = native.spliceStart(fdA, fdB, opts.prefixAtoB ?? EMPTY, opts.prefixBtoA ?? EMPTY, opts.pipeSize ?? DEFAULT_PIPE_SIZE, eventsTo(box, onEvent));
    box.relay = new SpliceRelay(splicer);
    return box.relay;
  }

  /**
   * Takes two connected net.Sockets over, carrying the bytes Node had already read as
   * prefixes. Synchronous, so no read can land in between. Returns undefined, leaving both
   * sockets untouched, when they cannot be handed over (no fd, connecting, bytes queued for
   * writing, destroyed): the caller relays in JS then. A throw (EMFILE on a pipe or dup, an fd
   * libuv still watches) also leaves them as they were, their read bytes put back.
   *
   * Without `park`: the relay works on dups and the JS sockets are destroyed (the connections
   * live on in the dups). With `park`: the relay works on the sockets' own fds (no dups) and
   * never closes them; the sockets stay open, never read or written again, so their owners keep
   * tracking, closing or resetting them. Destroying a parked socket first stops the relay (with
   * RST armed for both peers) and only then lets Node close the fd, so the relay never polls a
   * closed or reused fd number; the caller destroys both once the relay ended.
   */
  static fromSockets(a: Socket, b: Socket, onEvent: (e: SpliceEvent) => void, opts: HandOverOptions = {}): SpliceRelay | undefined {
    const fa = handoverFd(a);
    const fb = handoverFd(b);
    if (fa === undefined || fb === undefined) return undefined;
    const prefixAtoB = drain(a);
    const prefixBtoA = drain(b);
    const { park } = opts;
    const start: SpliceStartOptions = { prefixAtoB, prefixBtoA, ...(opts.pipeSize !== undefined ? { pipeSize: opts.pipeSize } : {}) };
    let relay: SpliceRelay;
    try {
      relay = park === undefined ? SpliceRelay.onDups(fa, fb, onEvent, start) : SpliceRelay.borrow(a, b, fa, fb, onEvent, start);
    } catch (err) {
      putBack(a, prefixAtoB);
      putBack(b, prefixBtoA);
      throw err;
    }
    // Errors on the JS sockets (none expected: they no longer read or write) must not crash anyone.
    for (const s of [a, b]) {
      s.on("error", () => undefined);
      if (park === undefined) {
        s.destroy();
        continue;
      }
      parkSocket(s, () => {
        relay.close(true);
        park.onDestroy();
      });
    }
    return relay;
  }

  private static onDups(fa: number, fb: number, onEvent: (e: SpliceEvent) => void, start: SpliceStartOptions): SpliceRelay {
    const dupA = native.dupFd(fa);
    let dupB: number;
    try {
      dupB = native.dupFd(fb);
    } catch (err) {
      native.closeFd(dupA);
      throw err;
    }
    try {
      return SpliceRelay.fromFds(dupA, dupB, onEvent, start);
    } catch (err) {
      native.closeFd(dupA);
      native.closeFd(dupB);
      throw err;
    }
  }

  /** On the sockets' own fds: reading stops first, so no uv handle but the relay's watches them. */
  private static borrow(a: Socket, b: Socket, fa: number, fb: number, onEvent: (e: SpliceEvent) => void, prefixes: SpliceStartOptions): SpliceRelay {
    stopReading(a);
    stopReading(b);
    const box: { relay?: SpliceRelay } = {};
    const splicer = native.spliceBorrow(fa, fb, prefixes.prefixAtoB ?? EMPTY, prefixes.prefixBtoA ?? EMPTY, prefixes.pipeSize ?? DEFAULT_PIPE_SIZE, eventsTo(box, onEvent));
    box.relay = new SpliceRelay(splicer);
    return box.relay;
  }

  /** Bytes moved so far (final once the relay ended). */
  counts(): SpliceCounts {
    return this.closedFlag ? this.last : this.snapshot();
  }

  private snapshot(): SpliceCounts {
    const { aToB, bToA } = native.spliceStats(this.splicer);
    this.last = { aToB, bToA };
    return this.last;
  }

  /** The capacity the kernel gave the relay's pipes (the smaller one): what one round trip moves at most. */
  pipeBytes(): number {
    return native.spliceStats(this.splicer).pipeBytes;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Stops and closes both connections: with RST to both peers when reset, else FIN. No event follows. */
  close(reset: boolean): void {
    if (this.closedFlag) return;
    this.snapshot();
    this.closedFlag = true;
    native.spliceClose(this.splicer, reset);
  }
}

export interface HandOverOptions {
  /** As SpliceStartOptions.pipeSize. */
  pipeSize?: number;
  /**
   * Relay on the sockets' own fds and keep them open, parked (see fromSockets). onDestroy runs
   * when their owner destroys one while the relay runs, after the relay stopped.
   */
  park?: { readonly onDestroy: () => void };
}

/** The native callback, turned into SpliceEvents; box.relay is set once spliceStart returned. */
function eventsTo(box: { relay?: SpliceRelay }, onEvent: (e: SpliceEvent) => void) {
  return (event: number, errno: number, aToB: number, bToA: number, what: string): void => {
    const counts = { aToB, bToA };
    box.relay?.settle(counts, event !== SPLICE_A_TO_B_ENDED && event !== SPLICE_B_TO_A_ENDED);
    if (event === SPLICE_A_TO_B_ENDED) return onEvent({ t: "ended", direction: "aToB", counts });
    if (event === SPLICE_B_TO_A_ENDED) return onEvent({ t: "ended", direction: "bToA", counts });
    if (event === SPLICE_COMPLETE) return onEvent({ t: "complete", counts });
    if (event === SPLICE_ERROR) {
      const error = makeNativeError(`splice relay: ${what}`, errno, what.split(" ")[0] ?? what, errnoText(errno));
      return onEvent({ t: "error", error, counts });
    }
  };
}

type Internals = {
  _handle?: { reading?: boolean; readStop?: () => number; readStart?: () => number; fd?: unknown };
  _readableState?: { reading?: boolean };
  _read: () => void;
  _write: (chunk: unknown, enc: unknown, cb: (err?: Error) => void) => void;
  _writev: (chunks: unknown, cb: (err?: Error) => void) => void;
  _final: (cb: (err?: Error) => void) => void;
  _destroy: (err: Error | null, cb: (err?: Error | null) => void) => void;
};

/**
 * Stops a socket's reading. pause() alone would not: Node keeps reading up to the high-water
 * mark. Reversible: resume() starts the handle again (Node checks `_handle.reading`).
 */
function stopReading(s: Socket): void {
  s.pause();
  const h = (s as unknown as Internals)._handle;
  if (h !== undefined) {
    h.reading = false;
    h.readStop?.();
  }
}

/**
 * Parks a socket whose fd the relay now uses: never read again (a later resume() or read()
 * would restart the handle and steal bytes from the relay), any write or end fails it (libuv
 * would start watching the fd), and its destruction runs beforeClose before Node closes the fd.
 */
function parkSocket(s: Socket, beforeClose: () => void): void {
  stopReading(s);
  const i = s as unknown as Internals;
  const destroy = i._destroy;
  const refuse = (cb: (err?: Error) => void): void => cb(new Error("a socket handed to the kernel relay cannot be written"));
  i._read = () => undefined;
  i._write = (_chunk, _enc, cb) => refuse(cb);
  i._writev = (_chunks, cb) => refuse(cb);
  i._final = (cb) => refuse(cb);
  i._destroy = (err, cb) => {
    beforeClose();
    destroy.call(s, err, cb);
  };
}

/**
 * The hand-over failed: the drained bytes go back into the socket, and a handle stopped while
 * the stream waited for a read restarts (resume() would not: Readable calls _read only when it
 * is not already waiting for one).
 */
function putBack(s: Socket, bytes: Uint8Array): void {
  if (bytes.length > 0) s.unshift(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
  const i = s as unknown as Internals;
  const h = i._handle;
  if (h !== undefined && h.reading === false && i._readableState?.reading === true && !s.destroyed) {
    h.reading = true;
    h.readStart?.();
  }
}

/** The fd of a socket that can be handed over now, or undefined. */
function handoverFd(s: Socket): number | undefined {
  if (s.destroyed || s.connecting || s.writableLength > 0 || s.writableEnded) return undefined;
  const fd = (s as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

/** What Node has read from the socket but nobody consumed yet. */
function drain(s: Socket): Uint8Array {
  const chunks: Buffer[] = [];
  for (let c = s.read() as Buffer | string | null; c !== null; c = s.read() as Buffer | string | null) {
    chunks.push(typeof c === "string" ? Buffer.from(c) : c);
  }
  return chunks.length === 0 ? EMPTY : Buffer.concat(chunks);
}
