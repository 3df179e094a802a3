import { EventEmitter } from "node:events";
import { lstatSync, unlinkSync } from "node:fs";
import { getSystemErrorMap } from "node:util";
import { native, POLL_READABLE, POLL_WRITABLE, type Poller, type RawDatagram } from "./binding.js";
import { makeNativeError, NativeError } from "./errors.js";

/** A filesystem path, or a name in the abstract namespace (no file; gone with the last fd). */
export type SeqpacketAddress = string | { abstract: string };

export interface SeqpacketListenOptions {
  backlog?: number;
  /** chmod of the socket file (path addresses only). */
  mode?: number;
  /** Receive buffer per datagram of accepted sockets (default 64 KiB). */
  maxDatagram?: number;
}

export interface SeqpacketConnectOptions {
  /** Receive buffer per datagram (default 64 KiB); larger datagrams are reported as truncated. */
  maxDatagram?: number;
  /** How long to retry while the listener's backlog is full (default 5000 ms). */
  timeoutMs?: number;
}

export const DEFAULT_MAX_DATAGRAM = 64 * 1024;
// Bound the work per readiness callback so one busy socket cannot starve the loop (the poll
// is level-triggered: whatever is left fires again on the next iteration).
const MAX_PER_WAKEUP = 64;

interface ParsedAddress {
  name: string;
  abstract: boolean;
  shown: string;
}

function parseAddress(address: SeqpacketAddress): ParsedAddress {
  if (typeof address === "string") return { name: address, abstract: false, shown: address };
  if (address !== null && typeof address === "object" && typeof address.abstract === "string") {
    return { name: address.abstract, abstract: true, shown: `@${address.abstract}` };
  }
  throw new TypeError("a seqpacket address is a path string or { abstract: name }");
}

function checkMaxDatagram(v: number | undefined): number {
  const max = v ?? DEFAULT_MAX_DATAGRAM;
  if (!Number.isInteger(max) || max <= 0 || max > 64 * 1024 * 1024) {
    throw new TypeError(`maxDatagram must be an integer in 1..64 MiB, got ${v}`);
  }
  return max;
}

function pollError(what: string, status: number): NativeError {
  const text = getSystemErrorMap().get(status)?.[1] ?? `error ${status}`;
  return makeNativeError(what, -status, "poll", text);
}

function closeQuietly(fd: number): void {
  try {
    native.closeFd(fd);
  } catch {
    // Nothing useful to do: the fd number is gone either way.
  }
}

function socketClosedError(what: string): NativeError {
  return new NativeError("ERR_SOCKET_CLOSED", `${what}: the seqpacket socket is closed`, 9, "sendmsg");
}

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
export class SeqpacketSocket extends EventEmitter {
  #fd: number;
  #poller: Poller | null;
  readonly #maxDatagram: number;
  #queue: PendingSend[] = [];
  #events = 0;
  #closed = false;

  /** Internal: adopts a connected, non-blocking SEQPACKET fd (closed on failure). */
  constructor(fd: number, maxDatagram: number = DEFAULT_MAX_DATAGRAM) {
    super();
    this.#fd = fd;
    try {
      this.#maxDatagram = checkMaxDatagram(maxDatagram);
      this.#poller = native.pollStart(fd, (status, events) => this.#onPoll(status, events));
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
    this.#setEvents(POLL_READABLE);
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
      if (Date.now() >= deadline) {
        throw makeNativeError(
          `connect to unix seqpacket socket ${shown} (backlog full for ${timeoutMs} ms)`,
          11,
          "connect",
          "Resource temporarily unavailable",
        );
      }
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
        if (native.seqSend(this.#fd, data, fd ?? -1)) return Promise.resolve();
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
      this.#setEvents(this.#events | POLL_WRITABLE);
    });
  }

  /** SO_PEERCRED: the peer process as of connect()/listen(). */
  peerCredentials(): { pid: number; uid: number; gid: number } {
    if (this.#closed) throw socketClosedError("peerCredentials");
    return native.peerCred(this.#fd);
  }

  /** Whether this socket keeps the event loop alive (like net.Socket#ref/unref). */
  ref(): this {
    if (this.#poller) native.pollRef(this.#poller, true);
    return this;
  }

  unref(): this {
    if (this.#poller) native.pollRef(this.#poller, false);
    return this;
  }

  close(): void {
    this.#shutdown(undefined);
  }

  #shutdown(err: NativeError | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#poller) native.pollClose(this.#poller); // stops polling, then closes the fd
    this.#poller = null;
    this.#fd = -1;
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

  #setEvents(events: number): void {
    if (this.#poller === null || events === this.#events) return;
    this.#events = events;
    native.pollUpdate(this.#poller, events);
  }

  #onPoll(status: number, events: number): void {
    if (this.#closed) return;
    if (status < 0) {
      // libuv stopped the handle (POLLERR): read once to surface the real socket error.
      try {
        native.seqRecv(this.#fd, this.#maxDatagram);
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
        sent = native.seqSend(this.#fd, p.data, p.fd);
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
    if (!this.#closed) this.#setEvents(this.#events & ~POLL_WRITABLE);
  }

  #readSome(): void {
    for (let i = 0; i < MAX_PER_WAKEUP && !this.#closed; i++) {
      let d: RawDatagram | null | undefined;
      try {
        d = native.seqRecv(this.#fd, this.#maxDatagram);
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
      const err = new NativeError(code, `recvmsg: ${what}; the datagram was dropped`, 90 /* EMSGSIZE */, "recvmsg");
      this.emit("datagramError", err);
      return;
    }
    const fd = d.fds[0];
    if (!this.emit("message", d.data, fd) && fd !== undefined) closeQuietly(fd);
  }
}

/**
 * A listening AF_UNIX SOCK_SEQPACKET socket. Events: 'connection' (SeqpacketSocket), 'error'
 * (NativeError), 'close'. An existing file at the path (live or stale) makes listen() fail with
 * EADDRINUSE; it is never removed for the caller.
 */
export class SeqpacketServer extends EventEmitter {
  #poller: Poller | null;
  #fd: number;
  readonly #maxDatagram: number;
  readonly #path: string | null;
  readonly #pathIdentity: { dev: bigint; ino: bigint } | null;
  #closed = false;
  #paused: NodeJS.Timeout | null = null;
  readonly address: string;

  private constructor(fd: number, parsed: ParsedAddress, maxDatagram: number) {
    super();
    this.#fd = fd;
    this.#maxDatagram = maxDatagram;
    this.address = parsed.shown;
    this.#path = parsed.abstract ? null : parsed.name;
    let identity: { dev: bigint; ino: bigint } | null = null;
    try {
      if (this.#path !== null) {
        const st = lstatSync(this.#path, { bigint: true });
        identity = { dev: st.dev, ino: st.ino };
      }
      this.#poller = native.pollStart(fd, (status) => this.#onPoll(status));
    } catch (err) {
      closeQuietly(fd);
      if (this.#path !== null) unlinkSync(this.#path);
      throw err;
    }
    this.#pathIdentity = identity;
    native.pollUpdate(this.#poller, POLL_READABLE);
  }

  static listen(address: SeqpacketAddress, opts: SeqpacketListenOptions = {}): SeqpacketServer {
    const parsed = parseAddress(address);
    const max = checkMaxDatagram(opts.maxDatagram);
    const backlog = opts.backlog ?? 128;
    const mode = opts.mode ?? -1;
    const fd = native.seqListen(parsed.name, parsed.abstract, backlog, mode);
    return new SeqpacketServer(fd, parsed, max);
  }

  get closed(): boolean {
    return this.#closed;
  }

  ref(): this {
    if (this.#poller) native.pollRef(this.#poller, true);
    return this;
  }

  unref(): this {
    if (this.#poller) native.pollRef(this.#poller, false);
    return this;
  }

  /** Stops listening and removes the socket file it created; accepted sockets stay open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#paused) clearTimeout(this.#paused);
    if (this.#poller) native.pollClose(this.#poller);
    this.#poller = null;
    this.#fd = -1;
    if (this.#path !== null && this.#pathIdentity !== null) {
      // Only unlink the file if it is still the one we bound (someone may have replaced it).
      try {
        const st = lstatSync(this.#path, { bigint: true });
        if (st.dev === this.#pathIdentity.dev && st.ino === this.#pathIdentity.ino) unlinkSync(this.#path);
      } catch {
        // Already gone.
      }
    }
    process.nextTick(() => this.emit("close"));
  }

  #onPoll(status: number): void {
    if (this.#closed) return;
    if (status < 0) {
      this.#pause(pollError(`poll unix seqpacket listener ${this.address}`, status));
      return;
    }
    for (let i = 0; i < MAX_PER_WAKEUP && !this.#closed; i++) {
      let fd: number;
      try {
        fd = native.seqAccept(this.#fd);
      } catch (err) {
        // EMFILE and friends: accepting again at once would spin; back off briefly.
        this.#pause(err as NativeError);
        return;
      }
      if (fd < 0) return;
      let sock: SeqpacketSocket;
      try {
        sock = new SeqpacketSocket(fd, this.#maxDatagram);
      } catch (err) {
        this.emit("error", err);
        continue;
      }
      if (!this.emit("connection", sock)) sock.close();
    }
  }

  #pause(err: NativeError): void {
    if (this.#poller === null) return;
    native.pollUpdate(this.#poller, 0);
    this.#paused = setTimeout(() => {
      this.#paused = null;
      if (!this.#closed && this.#poller) native.pollUpdate(this.#poller, POLL_READABLE);
    }, 100);
    this.emit("error", err);
  }
}
