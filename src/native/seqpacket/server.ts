import { lstatSync, unlinkSync } from "node:fs";
import { native, POLL_READABLE } from "../binding.js";
import type { NativeError } from "../errors.js";
import { pollError } from "./errors.js";
import {
  checkMaxDatagram,
  MAX_PER_WAKEUP,
  parseAddress,
  type ParsedAddress,
  type SeqpacketAddress,
  type SeqpacketListenOptions,
} from "./options.js";
import { PolledEmitter, PolledFd } from "./polled-fd.js";
import { SeqpacketSocket } from "./socket.js";

type FileIdentity = { dev: bigint; ino: bigint };

// Starts polling the listening fd and records which file it bound; on failure closes the fd
// and removes the file (bind just created it: without a server nobody would remove it).
function adopt(
  fd: number,
  path: string | null,
  onPoll: (status: number) => void,
): { io: PolledFd; identity: FileIdentity | null } {
  let io: PolledFd | undefined;
  try {
    io = new PolledFd(fd, onPoll); // closes fd itself if it fails
    if (path === null) return { io, identity: null };
    const st = lstatSync(path, { bigint: true });
    return { io, identity: { dev: st.dev, ino: st.ino } };
  } catch (err) {
    io?.close();
    if (path !== null) unlinkSync(path);
    throw err;
  }
}

/**
 * A listening AF_UNIX SOCK_SEQPACKET socket. Events: 'connection' (SeqpacketSocket), 'error'
 * (NativeError), 'close'. An existing file at the path (live or stale) makes listen() fail with
 * EADDRINUSE; it is never removed for the caller.
 */
export class SeqpacketServer extends PolledEmitter {
  protected readonly io: PolledFd;
  readonly #maxDatagram: number;
  readonly #path: string | null;
  readonly #pathIdentity: FileIdentity | null;
  #closed = false;
  #paused: NodeJS.Timeout | null = null;
  readonly address: string;

  private constructor(fd: number, parsed: ParsedAddress, maxDatagram: number) {
    super();
    this.#maxDatagram = maxDatagram;
    this.address = parsed.shown;
    this.#path = parsed.abstract ? null : parsed.name;
    const { io, identity } = adopt(fd, this.#path, (status) => this.#onPoll(status));
    this.io = io;
    this.#pathIdentity = identity;
    this.io.setEvents(POLL_READABLE);
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

  /** Stops listening and removes the socket file it created; accepted sockets stay open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#paused) clearTimeout(this.#paused);
    this.io.close();
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
        fd = native.seqAccept(this.io.fd);
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
    if (this.io.fd < 0) return;
    this.io.setEvents(0);
    this.#paused = setTimeout(() => {
      this.#paused = null;
      if (!this.#closed) this.io.setEvents(POLL_READABLE);
    }, 100);
    this.emit("error", err);
  }
}
