import type { Duplex } from "node:stream";

// Writes to a socket corked until the event loop's check phase: every frame queued during one
// turn (a header and its DATA views, acks, WINDOW_UPDATEs) leaves in a single writev.

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
    if (!this.corked) {
      this.corked = true;
      sock.cork();
      setImmediate(this.uncork);
    }
    sock.write(buf);
  }

  /** Send what is queued now (before ending the socket). */
  flush(): void {
    this.uncork();
  }
}
