import { EventEmitter } from "node:events";
import { native, type Poller } from "../binding.js";

export function closeQuietly(fd: number): void {
  try {
    native.closeFd(fd);
  } catch {
    // Nothing useful to do: the fd number is gone either way.
  }
}

/**
 * An fd watched by the addon's uv_poll handle on this thread's loop: the one owner of the fd
 * and its poller for both the listener and the connected socket.
 */
export class PolledFd {
  #fd: number;
  #poller: Poller | null;
  #events = 0;

  /** Adopts fd and starts its poller (no events yet); on failure closes fd and throws. */
  constructor(fd: number, onPoll: (status: number, events: number) => void) {
    try {
      this.#poller = native.pollStart(fd, onPoll);
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
    this.#fd = fd;
  }

  /** The fd, -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** The events polled for (POLL_READABLE | POLL_WRITABLE bits). */
  get events(): number {
    return this.#events;
  }

  setEvents(events: number): void {
    if (this.#poller === null || events === this.#events) return;
    this.#events = events;
    native.pollUpdate(this.#poller, events);
  }

  /** Whether the fd keeps the event loop alive (like net.Socket#ref/unref). No-op once closed. */
  ref(keepAlive: boolean): void {
    if (this.#poller) native.pollRef(this.#poller, keepAlive);
  }

  /** Stops polling, then closes the fd (so epoll never watches a reused number). Idempotent. */
  close(): void {
    if (this.#poller) native.pollClose(this.#poller);
    this.#poller = null;
    this.#fd = -1;
  }
}

/** What the listener and the connected socket share: an emitter over one PolledFd. */
export abstract class PolledEmitter extends EventEmitter {
  protected abstract readonly io: PolledFd;

  /** Whether this keeps the event loop alive (like net.Socket#ref/unref). */
  ref(): this {
    this.io.ref(true);
    return this;
  }

  unref(): this {
    this.io.ref(false);
    return this;
  }
}
