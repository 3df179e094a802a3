import { fstatSync } from "node:fs";
import { closeFd } from "../../native/index.js";

// Connections on their way between two workers (worker/hbone-balance.ts): the sender's dup of the fd
// travels through the main thread. Ownership rule: the main thread owns such an fd from the
// moment the sender's message arrives until the receiver answers that it took it (served it,
// closed it or gave it back); a receiver that dies before answering leaves it here, and the
// main thread closes it. Exactly once: a receiver may have wrapped the fd and died before its
// answer came, and a dying worker's sockets are closed with it, so the number may already be
// closed or even reused by another socket; the fd is closed only while it still refers to the
// socket (same inode) that was handed over.

interface InFlight {
  readonly to: number;
  readonly fd: number;
  /** The socket's inode when it was handed (undefined: the fd was not open then). */
  readonly ino: bigint | undefined;
}

export class HandoffLedger {
  private readonly inFlight = new Map<number, InFlight>();
  private nextId = 1;

  /** The main thread takes `fd` on its way to worker `to`; the id goes with it. */
  add(to: number, fd: number): number {
    const id = this.nextId++;
    this.inFlight.set(id, { to, fd, ino: inodeOf(fd) });
    return id;
  }

  /** The receiver owns the fd now. */
  taken(id: number): void {
    this.inFlight.delete(id);
  }

  get size(): number {
    return this.inFlight.size;
  }

  /** Worker `to` died (or is not up): closes what was on its way to it and it never took; returns how many. */
  closeFor(to: number): number {
    let closed = 0;
    for (const [id, h] of this.inFlight) {
      if (h.to !== to) continue;
      this.inFlight.delete(id);
      if (h.ino !== undefined && inodeOf(h.fd) === h.ino) {
        closeQuietly(h.fd);
        closed++;
      }
    }
    return closed;
  }
}

function inodeOf(fd: number): bigint | undefined {
  try {
    return fstatSync(fd, { bigint: true }).ino;
  } catch {
    return undefined;
  }
}

function closeQuietly(fd: number): void {
  try {
    closeFd(fd);
  } catch {
    // Already gone.
  }
}
