import { native, POLL_READABLE, POLL_WRITABLE, type RawDatagram } from "../binding.js";
import type { NativeError } from "../errors.js";
import { backlogFullError, datagramError, pollError, socketClosedError } from "./errors.js";
import {
  checkMaxDatagram,
  DEFAULT_MAX_DATAGRAM,
  MAX_PER_WAKEUP,
  parseAddress,
  type SeqpacketAddress,
  type SeqpacketConnectOptions,
} from "./options.js";
import { closeQuietly, PolledEmitter, PolledFd } from "./polled-fd.js";

interface PendingSend {
  data: Uint8Array;
  fd: number; // our own dup, -1 for none
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * A connected AF_UNIX SOCK_SEQPACKET socket. Events:
 * - 'message' (data: Buffer, fd: number | undefined): one datagram; the listener owns the fd
 *   (close-on-exec). With no 'message' listener a received fd is closed.
 * - 'datagramError' (err: NativeError): a datagram that cannot be delivered intact, code
 *   ERR_DATAGRAM_TRUNCATED (bigger than maxDatagram, or control data cut) or ERR_TOO_MANY_FDS;
 *   its fds are already closed and the socket stays open.
 * - 'error' (NativeError) followed by 'close' on a socket error; 'close' alone on EOF or close().
 */
export class SeqpacketSocket extends PolledEmitter {
  protected readonly io: PolledFd;
  readonly #maxDatagram: number;
  #queue: PendingSend[] = [];
  #closed = false;

  /** Internal: adopts a connected, non-blocking SEQPACKET fd (closed on failure). */
  constructor(fd: number, maxDatagram: number = DEFAULT_MAX_DATAGRAM) {
    super();
    try {
      this.#maxDatagram = checkMaxDatagram(maxDatagram);
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
    this.io = new PolledFd(fd, (status, events) => this.#onPoll(status, events));
    this.io.setEvents(POLL_READABLE);
  }

  static async connect(address: SeqpacketAddress, opts: SeqpacketConnectOptions = {}): Promise<SeqpacketSocket> {
    const { name, abstract, shown } = parseAddress(address);
    const max = checkMaxDatagram(opts.maxDatagram);
    const timeoutMs = opts.timeoutMs ?? 5000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const fd = native.seqConnect(name, abstract);
      if (fd >= 0) return new SeqpacketSocket(fd, max);
      // Unix sockets report a full accept backlog as EAGAIN instead of connecting later.
      if (Date.now() >= deadline) throw backlogFullError(shown, timeoutMs);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sends one datagram, with at most one fd (the kernel duplicates it; the caller keeps its
   * own). If the socket buffer is full the datagram is queued (with our own dup of the fd, so
   * the caller may close theirs at once) and sent when the socket becomes writable.
   */
  send(data: Uint8Array, fd?: number): Promise<void> {
    if (this.#closed) return Promise.reject(socketClosedError("send"));
    if (!(data instanceof Uint8Array)) return Promise.reject(new TypeError("data must be a Uint8Array"));
    if (data.byteLength === 0) {
      // A zero-length datagram reads as EOF on the other side.
      return Promise.reject(new TypeError("empty datagrams cannot be sent (the receiver would read EOF)"));
    }
    if (fd !== undefined && (!Number.isInteger(fd) || fd < 0)) {
      return Promise.reject(new TypeError(`fd must be a non-negative integer, got ${fd}`));
    }
    if (this.#queue.length === 0) {
      try {
        if (native.seqSend(this.io.fd, data, fd ?? -1)) return Promise.resolve();
      } catch (err) {
        return Promise.reject(err);
      }
    }
    let own = -1;
    if (fd !== undefined) {
      try {
        own = native.dupFd(fd);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ data, fd: own, resolve, reject });
      this.io.setEvents(this.io.events | POLL_WRITABLE);
    });
  }

  /** SO_PEERCRED: the peer process as of connect()/listen(). */
  peerCredentials(): { pid: number; uid: number; gid: number } {
    if (this.#closed) throw socketClosedError("peerCredentials");
    return native.peerCred(this.io.fd);
  }

  close(): void {
    this.#shutdown(undefined);
  }

  #shutdown(err: NativeError | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.io.close();
    const queue = this.#queue;
    this.#queue = [];
    for (const p of queue) {
      if (p.fd >= 0) closeQuietly(p.fd);
      p.reject(err ?? socketClosedError("send"));
    }
    process.nextTick(() => {
      if (err) this.emit("error", err);
      this.emit("close");
    });
  }

  #onPoll(status: number, events: number): void {
    if (this.#closed) return;
    if (status < 0) {
      // libuv stopped the handle (POLLERR): read once to surface the real socket error.
      try {
        native.seqRecv(this.io.fd, this.#maxDatagram);
      } catch (err) {
        this.#shutdown(err as NativeError);
        return;
      }
      this.#shutdown(pollError("poll unix seqpacket socket", status));
      return;
    }
    if (events & POLL_WRITABLE) this.#flush();
    if (events & POLL_READABLE) this.#readSome();
  }

  #flush(): void {
    while (this.#queue.length > 0 && !this.#closed) {
      const p = this.#queue[0]!;
      let sent: boolean;
      try {
        sent = native.seqSend(this.io.fd, p.data, p.fd);
      } catch (err) {
        this.#queue.shift();
        if (p.fd >= 0) closeQuietly(p.fd);
        p.reject(err as Error);
        continue;
      }
      if (!sent) return;
      this.#queue.shift();
      if (p.fd >= 0) closeQuietly(p.fd);
      p.resolve();
    }
    if (!this.#closed) this.io.setEvents(this.io.events & ~POLL_WRITABLE);
  }

  #readSome(): void {
    for (let i = 0; i < MAX_PER_WAKEUP && !this.#closed; i++) {
      let d: RawDatagram | null | undefined;
      try {
        d = native.seqRecv(this.io.fd, this.#maxDatagram);
      } catch (err) {
        this.#shutdown(err as NativeError);
        return;
      }
      if (d === undefined) return;
      if (d === null) {
        this.#shutdown(undefined); // EOF: the peer closed
        return;
      }
      this.#deliver(d);
    }
  }

  #deliver(d: RawDatagram): void {
    if (d.truncated || d.controlTruncated || d.fds.length > 1) {
      for (const fd of d.fds) closeQuietly(fd);
      const what = d.truncated
        ? `datagram larger than the receive buffer of ${this.#maxDatagram} bytes (maxDatagram)`
        : d.controlTruncated
          ? "datagram carried more control data (fds) than fits"
          : `datagram carried ${d.fds.length} fds (at most one is allowed)`;
      const code = d.truncated || d.controlTruncated ? "ERR_DATAGRAM_TRUNCATED" : "ERR_TOO_MANY_FDS";
      this.emit("datagramError", datagramError(code, what));
      return;
    }
    const fd = d.fds[0];
    if (!this.emit("message", d.data, fd) && fd !== undefined) closeQuietly(fd);
  }
}
