import type { Duplex } from "node:stream";

// Writes to a socket corked for the rest of the current callback, and for bulk for the rest of
// the event-loop turn: every frame queued meanwhile (a header and its DATA views, acks,
// WINDOW_UPDATEs) leaves in a single writev. When the callback that wrote has returned, a small
// batch (a request/response message) goes out at once, without waiting for the check phase; a
// larger one waits there for what other reads of this turn add (the 16 KiB records one TLS read
// decrypts arrive as separate callbacks). The plaintext relay uses the same batching for the
// chunks it copies to a socket (hold()).
//
// "The callback returned" is known two ways. The data path's own read handlers (an HBONE
// connection's TLS reads, the relay's socket reads) run inside batch(): whatever they held is
// settled when the outermost one returns, in the same call. Anything written elsewhere (a
// timer's PING, a response after an upstream connect) settles in a microtask. The microtask is
// what batch() saves per message: Node's queueMicrotask builds an AsyncResource and a bound
// function for each call and runs it through the async-hooks scope, about a third of what a
// worker allocated per 1 KiB request/response.

/** Queued bytes below which a batch is sent when the writing callback returns. */
export const SMALL_BATCH = 4 * 1024;

/** Depth of nested batch() calls on this thread (each worker has its own module instance). */
let depth = 0;
/** Writers held inside the current batch(), settled when the outermost one returns. */
const held: CorkedWriter[] = [];

/**
 * Runs `fn` (a read handler of the data path); every CorkedWriter it holds settles when the
 * outermost batch returns, as a held writer otherwise would in a microtask.
 */
export function batch<A>(fn: (arg: A) => void, arg: A): void {
  depth++;
  try {
    fn(arg);
  } finally {
    if (--depth === 0 && held.length > 0) settleHeld();
  }
}

function settleHeld(): void {
  // A writer that holds again while this runs is appended and settled by the same loop.
  for (let i = 0; i < held.length; i++) held[i].settle();
  held.length = 0;
}

export class CorkedWriter {
  private corked = false;
  private readonly uncork = (): void => {
    if (!this.corked) return;
    this.corked = false;
    if (!this.socket.destroyed) this.socket.uncork();
  };
  /** @internal the writing callback returned: a small batch goes now, a larger one at the check phase. */
  readonly settle = (): void => {
    if (!this.corked) return;
    if (this.socket.writableLength < SMALL_BATCH) this.uncork();
    else setImmediate(this.uncork);
  };

  constructor(private readonly socket: Duplex) {}

  write(buf: Buffer): void {
    const sock = this.socket;
    if (sock.destroyed || sock.writableEnded) return;
    this.hold();
    sock.write(buf);
  }

  /** Corks the socket until the current callback returns, or for the rest of this event-loop turn (the caller writes to it itself). */
  hold(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    if (depth > 0) held.push(this);
    else queueMicrotask(this.settle);
  }

  /** Send what is queued now (before ending the socket). */
  flush(): void {
    this.uncork();
  }
}
