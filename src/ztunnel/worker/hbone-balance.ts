import type { Socket } from "node:net";
import { dupFd } from "../../native/index.js";
import { fdOf } from "./connections.js";

// Inbound HBONE connections across a node's proxy workers. Each worker listens on a pod's 15008
// with SO_REUSEPORT, and the kernel picks the worker by a hash of the 4-tuple: right for many
// short connections, but HBONE clients pool (a peer worker keeps one long-lived connection per
// pod pair), so a node often sees a handful of them, and half the time two land on the same
// worker: that worker then does every stream's server side while the other idles (measured:
// ~30-40% fewer new connections per second through the pair in the bench's connection row).
// So a worker that already holds more inbound HBONE connections than another hands a fresh one
// over before reading a byte of it: a dup of the fd goes through the main thread (fds are
// process-wide) to the least loaded worker, which serves it as if it had accepted it (the same
// pod, handshake, budget and checks). The counts live in one shared Int32Array, a slot per
// worker; the main thread marks a worker that is not up so nothing is handed to it.

export type HandOff = (to: number, fd: number) => void;

export class HboneBalancer {
  constructor(
    /** Open inbound HBONE connections per worker (SharedArrayBuffer-backed). */
    private readonly load: Int32Array,
    private readonly me: number,
  ) {}

  /**
   * A connection this worker just accepted: kept (counted until the returned function runs) or
   * handed to a less loaded worker through `handOff` (undefined: it is closed here, not reset:
   * the dup keeps it open).
   */
  place(sock: Socket, handOff: HandOff): (() => void) | undefined {
    const load = this.load;
    let least = Atomics.load(load, this.me);
    let to = -1;
    for (let i = 0; i < load.length; i++) {
      if (i === this.me) continue;
      const n = Atomics.load(load, i);
      if (n < least) {
        least = n;
        to = i;
      }
    }
    if (to < 0) return this.count(this.me);
    let fd: number;
    try {
      fd = dupFd(fdOf(sock));
    } catch {
      // No descriptor to spare for the dup (or no fd): serve it here, where it already is.
      return this.count(this.me);
    }
    // Counted for the receiver now, so the next connection sees it before the message arrives.
    Atomics.add(load, to, 1);
    handOff(to, fd);
    sock.destroy();
    return undefined;
  }

  /** A connection handed to this worker (already counted for it): the function uncounts it. */
  adopted(): () => void {
    return this.release(this.me);
  }

  /** A handed connection this worker could not take (its pod is not here): uncount it. */
  refused(): void {
    Atomics.sub(this.load, this.me, 1);
  }

  /** A connection served here without a hand-off decision (one given back): counted until the function runs. */
  keep(): () => void {
    return this.count(this.me);
  }

  private count(i: number): () => void {
    Atomics.add(this.load, i, 1);
    return this.release(i);
  }

  private release(i: number): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      Atomics.sub(this.load, i, 1);
    };
  }
}
