import type { Duplex } from "node:stream";

// Writes to a socket corked for the rest of the current callback, and for bulk for the rest of
// the event-loop turn: every frame queued meanwhile (a header and its DATA views, acks,
// WINDOW_UPDATEs) leaves in a single writev. When the callback that wrote has returned, a small
// batch (a request/response message) goes out at once, without waiting for the check phase; a
// larger one waits there for what other reads of this turn add (the 16 KiB records one TLS read
// decrypts arrive as separate callbacks). The plaintext relay uses the same batching for the
// chunks it copies to a socket (hold()).

/** Queued bytes below which a batch is sent when the writing callback returns. */
export const SMALL_BATCH = 4 * 1024;

export class CorkedWriter {
  private corked = false;
  private readonly uncork = (): void => {
    if (!this.corked) return;
    this.corked = false;
    if (!this.socket.destroyed) this.socket.uncork();
  };
  private readonly settle = (): void => {
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
    queueMicrotask(this.settle);
  }

  /** Send what is queued now (before ending the socket). */
  flush(): void {
    this.uncork();
  }
}
