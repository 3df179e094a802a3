import type { H2Connection } from "../h2/connection.js";
import type { Logger } from "../../../shared/log.js";
import { formatHostPort } from "../../state/ip.js";
import { ProxyError } from "../errors.js";
import { dialHbone } from "./handshake.js";
import { startSession } from "./session.js";
import type { CertSource, HboneRequest } from "./types.js";

// One pooled HBONE connection and its life: connecting → ready → draining → closed. The state
// is a tagged union so each transition says what it carries (the session exists only once it
// is ready); PING keepalive and the idle release timer hang off the ready states.

export type ConnState =
  | { readonly t: "connecting"; readonly ready: Promise<H2Connection> }
  | { readonly t: "ready"; readonly session: H2Connection }
  | { readonly t: "draining"; readonly session: H2Connection; readonly reason: string }
  | { readonly t: "closed"; readonly error: Error | undefined };

/** The pool's settings, which its connections follow. */
export interface PoolSettings {
  readonly certs: CertSource;
  readonly maxStreams: number;
  readonly idleTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly maxHeaderListSize: number;
  readonly log: Logger;
}

/** What a connection needs from the pool that owns it. */
export interface PoolHost {
  readonly settings: PoolSettings;
  /** The connection left the pool (draining or closed). */
  forget(conn: PooledConnection): void;
}

let nextConnectionId = 1;

export class PooledConnection {
  readonly id = nextConnectionId++;
  state: ConnState;
  /** Streams open or being opened on this connection. */
  streams = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private pingDeadline: NodeJS.Timeout | undefined;

  constructor(
    readonly key: string,
    private readonly pool: PoolHost,
    req: HboneRequest,
  ) {
    const ready = this.establish(req);
    this.state = { t: "connecting", ready };
    // The connecting promise is awaited by acquirers; this catch only prevents an unhandled rejection.
    ready.catch(() => undefined);
  }

  /** Can take another stream (counting ones still connecting). */
  hasCapacity(): boolean {
    if (this.state.t === "connecting") return this.streams < this.pool.settings.maxStreams;
    if (this.state.t !== "ready") return false;
    const remote = this.state.session.remoteSettings.maxConcurrentStreams ?? Infinity;
    return this.streams < Math.min(this.pool.settings.maxStreams, remote);
  }

  /** More streams reserved than the server allows at once. */
  overRemoteLimit(): boolean {
    if (this.state.t !== "ready") return false;
    return this.streams > (this.state.session.remoteSettings.maxConcurrentStreams ?? Infinity);
  }

  reserve(): void {
    this.streams++;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  release(): void {
    this.streams--;
    if (this.streams > 0) return;
    if (this.state.t === "draining") {
      this.state.session.close();
      return;
    }
    this.armIdle();
  }

  /** Unused and ready: close after the release timeout unless a stream comes first. */
  armIdle(): void {
    if (this.streams > 0 || this.state.t !== "ready" || this.pool.settings.idleTimeoutMs <= 0) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.drain("idle"), this.pool.settings.idleTimeoutMs);
    this.idleTimer.unref();
  }

  async session(): Promise<H2Connection> {
    const s = this.state;
    switch (s.t) {
      case "connecting":
        return s.ready;
      case "ready":
        return s.session;
      case "draining":
        throw new ProxyError("POOL_CLOSED", `HBONE connection ${this.id} is draining (${s.reason})`);
      case "closed":
        throw new ProxyError("POOL_CLOSED", `HBONE connection ${this.id} is closed`, { cause: s.error });
    }
  }

  /** Stop taking streams; GOAWAY and close once the open ones finish. */
  drain(reason: string): void {
    const s = this.state;
    if (s.t !== "ready") return;
    this.state = { t: "draining", session: s.session, reason };
    this.pool.forget(this);
    clearTimeout(this.idleTimer);
    if (this.streams === 0) s.session.close();
  }

  destroy(err?: Error): void {
    const s = this.state;
    if (s.t === "ready" || s.t === "draining") s.session.destroy(err);
    this.toClosed(err);
  }

  private toClosed(err: Error | undefined): void {
    if (this.state.t === "closed") return;
    this.state = { t: "closed", error: err };
    clearTimeout(this.idleTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.pingDeadline);
    this.pool.forget(this);
  }

  private async establish(req: HboneRequest): Promise<H2Connection> {
    const p = this.pool.settings;
    const addr = formatHostPort(req.hboneAddress.ip, req.hboneAddress.port);
    try {
      const cert = await p.certs.get(req.sourceIdentity);
      const secured = await dialHbone(req, cert, p.handshakeTimeoutMs);
      return await startSession(secured, addr, {
        handshakeTimeoutMs: p.handshakeTimeoutMs,
        maxHeaderListSize: p.maxHeaderListSize,
        onError: (err) => p.log.debug({ conn: this.id, err: err.message }, "HBONE connection error"),
        adopt: (session) => this.toReady(session),
      });
    } catch (err) {
      this.toClosed(err as Error);
      throw err;
    }
  }

  /** The server's SETTINGS arrived: take streams, unless the pool gave up on us meanwhile. */
  private toReady(session: H2Connection): Error | undefined {
    if (this.state.t !== "connecting") return new ProxyError("POOL_CLOSED", "pool closed while connecting");
    this.state = { t: "ready", session };
    session.on("goaway", (code: number) => this.drainOnGoaway(code));
    session.once("close", () => this.toClosed(undefined));
    this.startPing(session);
    // Everyone who asked for a stream may have given up while we were connecting.
    this.armIdle();
    return undefined;
  }

  private drainOnGoaway(code: number): void {
    const s = this.state;
    if (s.t === "ready") {
      this.state = { t: "draining", session: s.session, reason: `GOAWAY code ${code}` };
      this.pool.forget(this);
    }
  }

  private startPing(session: H2Connection): void {
    const p = this.pool.settings;
    if (p.pingIntervalMs <= 0) return;
    this.pingTimer = setInterval(() => {
      if (this.pingDeadline !== undefined) return;
      this.pingDeadline = setTimeout(() => {
        p.log.warn({ conn: this.id }, "HBONE PING unanswered; closing the connection");
        this.destroy(new ProxyError("HBONE_STREAM_RESET", `PING unanswered for ${p.pingTimeoutMs} ms`));
      }, p.pingTimeoutMs);
      this.pingDeadline.unref();
      const sent = session.ping(() => {
        clearTimeout(this.pingDeadline);
        this.pingDeadline = undefined;
      });
      if (!sent) {
        clearTimeout(this.pingDeadline);
        this.pingDeadline = undefined;
      }
    }, p.pingIntervalMs);
    this.pingTimer.unref();
  }
}
