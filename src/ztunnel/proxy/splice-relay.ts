import type { Socket } from "node:net";
import { SpliceRelay, type SpliceEvent } from "../../native/index.js";
import { ProxyError } from "./errors.js";
import { DEFAULT_HALF_CLOSE_MS, DEFAULT_IDLE_MS, type RelayEnd, type RelayOptions, type RelayResult } from "./relay.js";

// The plaintext relay of two TCP sockets in the kernel (native SpliceRelay): same contract as
// relay.ts's Relay (half-close kept, errors reset both peers, idle and half-close timeouts,
// byte counts). The relay works on the JS sockets' own fds; the sockets stay open but parked
// (never read or written again), so whoever tracks them keeps working: destroying or resetting
// either one (pod removed, policy revoked) cuts the relay and resets both peers. They are
// destroyed when the relay ends, which closes the connections. A spliced connection holds 6
// descriptors: its 2 sockets and a pipe (2 ends) per direction (SPLICE_EXTRA_FDS in budget.ts).

export class SpliceSocketRelay {
  readonly relay = "kernel" as const;
  readonly done: Promise<RelayResult>;
  private resolve!: (r: RelayResult) => void;
  private splice!: SpliceRelay;
  private finished = false;
  private readonly started = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private halfTimer: NodeJS.Timeout | undefined;
  private lastMoved = 0;

  private constructor(
    private readonly a: Socket,
    private readonly b: Socket,
    private readonly opts: RelayOptions,
  ) {
    this.done = new Promise((r) => (this.resolve = r));
  }

  /**
   * Takes the two connected sockets over, asking pipeSize bytes of each direction's pipe (default:
   * the native relay's); undefined (sockets untouched) when they cannot be
   * (bytes queued in Node, no fd). Throws the NativeError when the relay cannot start (EMFILE on
   * a pipe, an fd libuv still watches): the sockets are left as they were.
   */
  static start(a: Socket, b: Socket, opts: RelayOptions = {}, pipeSize?: number): SpliceSocketRelay | undefined {
    const r = new SpliceSocketRelay(a, b, opts);
    const relay = SpliceRelay.fromSockets(a, b, (e) => r.onEvent(e), { park: { onDestroy: () => r.cut() }, ...(pipeSize !== undefined ? { pipeSize } : {}) });
    if (relay === undefined) return undefined;
    r.splice = relay;
    const idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_MS;
    if (idleMs > 0) r.armIdle(idleMs);
    return r;
  }

  get counters(): { bytesAtoB: number; bytesBtoA: number } {
    const c = this.splice.counts();
    return { bytesAtoB: c.aToB, bytesBtoA: c.bToA };
  }

  /** Cuts both sides now with a reset. */
  abort(reason: Error = new Error("relay aborted")): void {
    if (this.finished) return;
    this.splice.close(true);
    this.finish("aborted", reason);
  }

  private onEvent(e: SpliceEvent): void {
    if (this.finished) return;
    if (e.t === "ended") return this.armHalfClose();
    if (e.t === "complete") return this.finish("complete", undefined);
    this.finish("error", e.error);
  }

  /** A parked socket was destroyed or reset by its owner (the relay already stopped, RST armed). */
  private cut(): void {
    if (this.finished) return;
    this.splice.close(true);
    this.finish("error", new Error("connection closed before both directions ended"));
  }

  private armHalfClose(): void {
    const ms = this.opts.halfCloseTimeoutMs ?? DEFAULT_HALF_CLOSE_MS;
    if (this.halfTimer !== undefined || ms <= 0) return;
    this.halfTimer = setTimeout(() => {
      if (this.finished) return;
      this.splice.close(true);
      this.finish("half-close-timeout", new ProxyError("HALF_CLOSE_TIMEOUT", `peer kept its half open for more than ${ms} ms after the other side closed`));
    }, ms);
    this.halfTimer.unref();
  }

  // Activity is sampled, not reported per chunk (the bytes never reach JS): a relay idle for
  // idleMs is noticed between idleMs and twice that.
  private armIdle(ms: number): void {
    this.idleTimer = setTimeout(() => {
      if (this.finished) return;
      const c = this.splice.counts();
      const moved = c.aToB + c.bToA;
      if (moved !== this.lastMoved) {
        this.lastMoved = moved;
        return this.armIdle(ms);
      }
      // Nothing in flight: both peers get a clean FIN.
      this.splice.close(false);
      this.finish("idle-timeout", new ProxyError("IDLE_TIMEOUT", `no bytes in either direction for ${ms} ms`));
    }, ms);
    this.idleTimer.unref();
  }

  private finish(end: RelayEnd, error: Error | undefined): void {
    this.finished = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.halfTimer);
    const c = this.splice.counts();
    // The relay stopped using the fds; the connections end when the sockets close them (with the
    // RST the relay armed on failure).
    this.a.destroy();
    this.b.destroy();
    this.resolve({ end, bytesAtoB: c.aToB, bytesBtoA: c.bToA, durationMs: Date.now() - this.started, error });
  }
}
