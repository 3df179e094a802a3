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
// side), backpressure by waiting for writability. The relay owns its two fds; JS learns of each
// direction's end, the completion and a failure (then both peers were reset) through onEvent.

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
}

const EMPTY = new Uint8Array(0);

export class SpliceRelay {
  private closedFlag = false;
  private last: SpliceCounts = { aToB: 0, bToA: 0 };

  private constructor(private readonly splicer: Splicer) {}

  /**
   * Starts relaying between two connected stream-socket fds. On success the relay owns both
   * (closes them when it ends); on a throw they stay the caller's.
   */
  static fromFds(fdA: number, fdB: number, onEvent: (e: SpliceEvent) => void, opts: SpliceStartOptions = {}): SpliceRelay {
    let relay: SpliceRelay | undefined;
    const splicer = native.spliceStart(
      fdA,
      fdB,
      opts.prefixAtoB ?? EMPTY,
      opts.prefixBtoA ?? EMPTY,
      (event, errno, aToB, bToA, what) => {
        const counts = { aToB, bToA };
        if (relay !== undefined) relay.last = counts;
        if (event === SPLICE_A_TO_B_ENDED) return onEvent({ t: "ended", direction: "aToB", counts });
        if (event === SPLICE_B_TO_A_ENDED) return onEvent({ t: "ended", direction: "bToA", counts });
        if (relay !== undefined) relay.closedFlag = true;
        if (event === SPLICE_COMPLETE) return onEvent({ t: "complete", counts });
        if (event === SPLICE_ERROR) {
          const error = makeNativeError(`splice relay: ${what}`, errno, what.split(" ")[0] ?? what, errnoText(errno));
          return onEvent({ t: "error", error, counts });
        }
      },
    );
    relay = new SpliceRelay(splicer);
    return relay;
  }

  /**
   * Takes two connected net.Sockets over: dups their fds, carries the bytes Node had already
   * read as prefixes, and destroys the JS sockets (their fds close; the connections live on in
   * the dups). Synchronous, so no read can land in between. Returns undefined, leaving both
   * sockets untouched, when they cannot be handed over (no fd, connecting, bytes queued for
   * writing, destroyed): the caller relays in JS then. With `park`, the JS sockets stay open
   * but never read again (their owners keep tracking, closing or resetting them; the caller
   * destroys them once the relay ended: a connection closes when its last fd does).
   */
  static fromSockets(a: Socket, b: Socket, onEvent: (e: SpliceEvent) => void, opts: HandOverOptions = {}): SpliceRelay | undefined {
    const fa = handoverFd(a);
    const fb = handoverFd(b);
    if (fa === undefined || fb === undefined) return undefined;
    const dupA = native.dupFd(fa);
    let dupB: number;
    try {
      dupB = native.dupFd(fb);
    } catch (err) {
      native.closeFd(dupA);
      throw err;
    }
    let relay: SpliceRelay;
    try {
      relay = SpliceRelay.fromFds(dupA, dupB, onEvent, { prefixAtoB: drain(a), prefixBtoA: drain(b) });
    } catch (err) {
      native.closeFd(dupA);
      native.closeFd(dupB);
      throw err;
    }
    // Errors on the JS sockets (none expected: they no longer read or write) must not crash anyone.
    for (const s of [a, b]) {
      s.on("error", () => undefined);
      if (opts.park) park(s);
      else s.destroy();
    }
    return relay;
  }

  /** Bytes moved so far (final once the relay ended). */
  counts(): SpliceCounts {
    if (this.closedFlag) return this.last;
    const c = native.spliceStats(this.splicer);
    this.last = c;
    return c;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Stops and closes both connections: with RST to both peers when reset, else FIN. No event follows. */
  close(reset: boolean): void {
    if (this.closedFlag) return;
    this.last = native.spliceStats(this.splicer);
    this.closedFlag = true;
    native.spliceClose(this.splicer, reset);
  }
}

export interface HandOverOptions {
  /** Keep the JS sockets open, reading stopped for good, instead of destroying them. */
  park?: boolean;
}

/**
 * Stops a socket's reading for good. pause() alone would not: Node keeps reading up to the
 * high-water mark, and a later resume() or read() restarts the handle, stealing bytes from the
 * kernel socket the relay reads. Node checks `_handle.reading` before readStart.
 */
function park(s: Socket): void {
  s.pause();
  const h = (s as unknown as { _handle?: { reading?: boolean; readStop?: () => number } })._handle;
  if (h !== undefined) {
    h.reading = false;
    h.readStop?.();
  }
  (s as unknown as { _read: () => void })._read = () => undefined;
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
