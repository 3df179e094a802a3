import type { Server } from "node:net";
import type { Logger } from "../../shared/log.js";

// Admission limits for a pod's listeners: a cap on concurrent connections, and a defined
// behaviour when the process runs out of file descriptors (accept fails with EMFILE): the
// connection is left to the kernel backlog / refused, the failure is logged at most once per
// interval with a count, and the process keeps running.

export class ConnectionLimiter {
  private active = 0;
  private rejected = 0;

  constructor(readonly max: number) {}

  /** A release function when admitted; undefined when at the cap. Release is idempotent. */
  tryAcquire(): (() => void) | undefined {
    if (this.active >= this.max) {
      this.rejected++;
      return undefined;
    }
    this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
    };
  }

  get stats(): { active: number; rejected: number; max: number } {
    return { active: this.active, rejected: this.rejected, max: this.max };
  }
}

const FD_EXHAUSTED = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/** Logs a repeating condition at most once per interval, reporting how often it happened. */
export class ThrottledLog {
  private last = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  warn(obj: Record<string, unknown>, msg: string): boolean {
    const t = this.now();
    if (t - this.last < this.intervalMs) {
      this.suppressed++;
      return false;
    }
    this.log.warn({ ...obj, suppressed: this.suppressed }, msg);
    this.last = t;
    this.suppressed = 0;
    return true;
  }
}

/**
 * Keeps a listening server alive through accept errors. Node reports a failed accept as an
 * 'error' on the server but keeps listening; without a handler it would crash the process.
 * On EMFILE libuv itself refuses the pending connections (it frees a reserved descriptor,
 * accepts and closes) and reports only what that trick could not absorb.
 */
export function guardAcceptErrors(server: Server, log: ThrottledLog, what: string, onExhausted?: (code: string) => void): void {
  server.on("error", (err: NodeJS.ErrnoException) => {
    const code = err.code ?? "";
    if (code === "EMFILE" || code === "ENFILE") onExhausted?.(code);
    const hint = FD_EXHAUSTED.has(code) ? "out of file descriptors or memory; new connections are refused until some close" : "accept failed";
    log.warn({ listener: what, code, err: err.message }, hint);
  });
}

export interface PeerCaps {
  /** Connections open at once over all peers. */
  readonly max: number;
  /** Connections open at once from one peer address. */
  readonly perPeer: number;
}

/**
 * Caps a server's concurrent connections, overall and per peer address, so one client (a pod
 * reaching the node's admin, metrics or readiness port) cannot hold every slot: the kubelet's
 * probe comes from another address and still gets in. Excess connections are closed at once.
 */
export function capConnections(server: Server, caps: PeerCaps, log: ThrottledLog, what: string): { readonly open: () => number } {
  const perPeer = new Map<string, number>();
  let open = 0;
  server.on("connection", (s) => {
    const peer = s.remoteAddress ?? "";
    const mine = perPeer.get(peer) ?? 0;
    if (open >= caps.max || mine >= caps.perPeer) {
      log.warn({ server: what, peer, open, peerOpen: mine, max: caps.max, perPeer: caps.perPeer }, "connection cap reached; closing new connections");
      s.destroy();
      return;
    }
    open++;
    perPeer.set(peer, mine + 1);
    s.once("close", () => {
      open--;
      const n = (perPeer.get(peer) ?? 1) - 1;
      if (n <= 0) perPeer.delete(peer);
      else perPeer.set(peer, n);
    });
  });
  return { open: () => open };
}
