import type { Duplex } from "node:stream";

// Writes to a socket corked until the event loop's check phase: every frame queued during one
// turn (a header and its DATA views, acks, WINDOW_UPDATEs) leaves in a single writev. The
// plaintext relay uses the same batching for the chunks it copies to a socket (hold()).

export class CorkedWriter {
  private corked = false;
  private readonly uncork = (): void => {
    if (!this.corked) return;
    this.corked = false;
    if (!this.socket.destroyed) this.socket.uncork();
  };

  constructor(private readonly socket: Duplex) {}

  write(buf: Buffer): void {
    const sock = this.socket;
    if (sock.destroyed || sock.writableEnded) return;
    this.hold();
    sock.write(buf);
  }

  /** Corks the socket for the rest of this event-loop turn (the caller writes to it itself). */
  hold(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    setImmediate(this.uncork);
  }

  /** Send what is queued now (before ending the socket). */
  flush(): void {
    this.uncork();
  }
}
