import { connect as h2connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import type { Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import type { SocketFactory } from "../../sockets/socket-factory.js";
import { formatHostPort } from "../state/ip.js";
import type { WorkloadCert } from "../tls/ca.js";
import { formatIdentity, type Identity } from "../tls/identity.js";
import { clientTlsOptions, PeerIdentityError } from "../tls/peer.js";
import { ProxyError } from "./errors.js";
import { CONNECTION_WINDOW, DEFAULT_MAX_HEADER_LIST_SIZE, hboneSettings, MAX_SESSION_MEMORY_MB, PROXY_KEEPALIVE } from "./h2-options.js";

// HBONE client: pooled mTLS HTTP/2 connections carrying one CONNECT stream per proxied TCP
// connection. A connection belongs to exactly one (source pod, source identity, destination
// identities, destination address): its socket lives in the source pod's netns, so two pods
// never share one. Each connection carries at most maxStreams streams; the next opens another.

export interface CertSource {
  get(identity: Identity): Promise<WorkloadCert>;
}

export interface HboneRequest {
  /** Source pod uid; part of the pool key. */
  readonly sourcePodUid: string;
  readonly sourceIdentity: Identity;
  /** Sockets for the source pod (its netns); part of the connection, not the key. */
  readonly socketFactory: SocketFactory;
  /** The server's URI SAN must be one of these. */
  readonly destinationIdentities: readonly Identity[];
  /** Where HBONE is spoken: `<pod ip>:15008`. */
  readonly hboneAddress: { readonly ip: string; readonly port: number };
  /** The original destination; becomes `:authority`. */
  readonly target: { readonly ip: string; readonly port: number };
  /** The original client, for `forwarded: for=`. */
  readonly client: { readonly ip: string; readonly port: number };
  /** Service hostname when the client addressed a service (`;host=` in forwarded). */
  readonly serviceHost?: string;
  readonly traceparent?: string;
  readonly baggage?: string;
}

export interface HboneClientOptions {
  certs: CertSource;
  maxStreamsPerConnection?: number;
  /** A pooled connection without streams for this long is closed (POOL_UNUSED_RELEASE_TIMEOUT). */
  idleTimeoutMs?: number;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** TCP connect + TLS handshake + HTTP/2 setup. */
  handshakeTimeoutMs?: number;
  maxHeaderListSize?: number;
  log?: Logger;
}

export interface HboneStream {
  readonly stream: ClientHttp2Stream;
  readonly headers: IncomingHttpHeaders;
  /** Which pooled connection carries it (tests and metrics). */
  readonly connectionId: number;
}

type ConnState =
  | { readonly t: "connecting"; readonly ready: Promise<ClientHttp2Session> }
  | { readonly t: "ready"; readonly session: ClientHttp2Session }
  | { readonly t: "draining"; readonly session: ClientHttp2Session; readonly reason: string }
  | { readonly t: "closed"; readonly error: Error | undefined };

let nextConnectionId = 1;

class PooledConnection {
  readonly id = nextConnectionId++;
  state: ConnState;
  /** Streams open or being opened on this connection. */
  streams = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private pingDeadline: NodeJS.Timeout | undefined;

  constructor(
    readonly key: string,
    private readonly pool: HbonePool,
    req: HboneRequest,
  ) {
    const ready = this.establish(req);
    this.state = { t: "connecting", ready };
    // The connecting promise is awaited by acquirers; this catch only prevents an unhandled rejection.
    ready.catch(() => undefined);
  }

  /** Can take another stream (counting ones still connecting). */
  hasCapacity(): boolean {
    if (this.state.t === "connecting") return this.streams < this.pool.maxStreams;
    if (this.state.t !== "ready") return false;
    const remote = this.state.session.remoteSettings.maxConcurrentStreams ?? Infinity;
    return this.streams < Math.min(this.pool.maxStreams, remote);
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
    if (this.streams > 0 || this.state.t !== "ready" || this.pool.idleTimeoutMs <= 0) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.drain("idle"), this.pool.idleTimeoutMs);
    this.idleTimer.unref();
  }

  async session(): Promise<ClientHttp2Session> {
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

  private async establish(req: HboneRequest): Promise<ClientHttp2Session> {
    const p = this.pool;
    const cert = await p.certs.get(req.sourceIdentity);
    const addr = formatHostPort(req.hboneAddress.ip, req.hboneAddress.port);
    let raw: Socket | undefined;
    let tlsSock: TLSSocket | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      const handshake = new Promise<TLSSocket>((resolve, reject) => {
        timer = setTimeout(
          () => reject(new ProxyError("HBONE_HANDSHAKE_TIMEOUT", `HBONE handshake with ${addr} took longer than ${p.handshakeTimeoutMs} ms`)),
          p.handshakeTimeoutMs,
        );
        raw = req.socketFactory.connectTcp({ host: req.hboneAddress.ip, port: req.hboneAddress.port, noDelay: true, keepAlive: PROXY_KEEPALIVE });
        raw.once("error", (err) => reject(new ProxyError("HBONE_HANDSHAKE_FAILED", `connecting to ${addr} failed: ${err.message}`, { cause: err })));
        raw.once("connect", () => {
          if (raw === undefined) return;
          // Inherited by the TLS socket: the transport never stays half-open (streams do).
          raw.allowHalfOpen = false;
          const t = tlsConnect({ socket: raw, ...clientTlsOptions(cert, req.destinationIdentities) });
          tlsSock = t;
          t.once("error", (err) => {
            const code = err instanceof PeerIdentityError ? "HBONE_PEER_IDENTITY" : "HBONE_HANDSHAKE_FAILED";
            reject(new ProxyError(code, `TLS with ${addr} failed: ${err.message}`, { cause: err }));
          });
          t.once("secureConnect", () => {
            if (t.alpnProtocol !== "h2") {
              reject(new ProxyError("HBONE_HANDSHAKE_FAILED", `${addr} did not negotiate ALPN h2`));
              return;
            }
            resolve(t);
          });
        });
      });
      const secured = await handshake;
      clearTimeout(timer);
      return await this.startSession(secured, addr);
    } catch (err) {
      clearTimeout(timer);
      tlsSock?.destroy();
      raw?.destroy();
      this.toClosed(err as Error);
      throw err;
    }
  }

  private startSession(socket: TLSSocket, addr: string): Promise<ClientHttp2Session> {
    const p = this.pool;
    return new Promise((resolve, reject) => {
      const session = h2connect(`https://${addr}`, {
        createConnection: () => socket,
        settings: hboneSettings(p.maxHeaderListSize),
        maxSessionMemory: MAX_SESSION_MEMORY_MB,
        maxHeaderListPairs: 64,
      });
      session.setLocalWindowSize(CONNECTION_WINDOW);
      let timer: NodeJS.Timeout | undefined;
      const fail = (err: Error): void => {
        clearTimeout(timer);
        session.destroy();
        reject(new ProxyError("HBONE_HANDSHAKE_FAILED", `HTTP/2 with ${addr} failed: ${err.message}`, { cause: err }));
      };
      session.once("error", fail);
      // A server that refuses our certificate (TLS 1.3 verifies the client after our side of
      // the handshake completed) just closes: no SETTINGS ever arrive.
      const early = (): void => fail(new Error("closed by the server before HTTP/2 settings (client certificate refused?)"));
      session.once("close", early);
      timer = setTimeout(() => {
        session.destroy();
        reject(new ProxyError("HBONE_HANDSHAKE_TIMEOUT", `no HTTP/2 settings from ${addr} within ${p.handshakeTimeoutMs} ms`));
      }, p.handshakeTimeoutMs);
      // Streams may be opened before the server's SETTINGS arrive; waiting for them lets the
      // pool respect the server's SETTINGS_MAX_CONCURRENT_STREAMS from the first stream.
      session.once("remoteSettings", () => {
        clearTimeout(timer);
        session.off("error", fail);
        session.off("close", early);
        session.on("error", (err) => p.log.debug({ conn: this.id, err: err.message }, "HBONE connection error"));
        if (this.state.t !== "connecting") {
          session.destroy();
          reject(new ProxyError("POOL_CLOSED", "pool closed while connecting"));
          return;
        }
        this.state = { t: "ready", session };
        session.on("goaway", (code: number) => this.drainOnGoaway(code));
        session.once("close", () => this.toClosed(undefined));
        this.startPing(session);
        // Everyone who asked for a stream may have given up while we were connecting.
        this.armIdle();
        resolve(session);
      });
    });
  }

  private drainOnGoaway(code: number): void {
    const s = this.state;
    if (s.t === "ready") {
      this.state = { t: "draining", session: s.session, reason: `GOAWAY code ${code}` };
      this.pool.forget(this);
    }
  }

  private startPing(session: ClientHttp2Session): void {
    const p = this.pool;
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

export class HbonePool {
  readonly certs: CertSource;
  readonly maxStreams: number;
  readonly idleTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly maxHeaderListSize: number;
  readonly log: Logger;
  private readonly conns = new Map<string, PooledConnection[]>();
  private readonly all = new Set<PooledConnection>();
  private closed = false;

  constructor(opts: HboneClientOptions) {
    this.certs = opts.certs;
    this.maxStreams = opts.maxStreamsPerConnection ?? 100;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 300_000;
    this.pingIntervalMs = opts.pingIntervalMs ?? 10_000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 20_000;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 10_000;
    this.maxHeaderListSize = opts.maxHeaderListSize ?? DEFAULT_MAX_HEADER_LIST_SIZE;
    this.log = opts.log ?? logger("ztunnel.hbone.client");
  }

  static key(req: HboneRequest): string {
    const dst = req.destinationIdentities.map(formatIdentity).sort().join(",");
    return `${req.sourcePodUid}|${formatIdentity(req.sourceIdentity)}|${dst}|${formatHostPort(req.hboneAddress.ip, req.hboneAddress.port)}`;
  }

  /** Opens a CONNECT stream; resolves after the peer answered 200. */
  async connect(req: HboneRequest): Promise<HboneStream> {
    // Streams reserved while a connection was still connecting may exceed the server's
    // SETTINGS_MAX_CONCURRENT_STREAMS once it arrives; the excess moves to another connection
    // instead of waiting in nghttp2's queue behind long-lived tunnels.
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new ProxyError("POOL_CLOSED", "HBONE pool is closed");
      const conn = this.acquire(req);
      let released = false;
      const release = (): void => {
        if (!released) {
          released = true;
          conn.release();
        }
      };
      try {
        const session = await conn.session();
        if (conn.overRemoteLimit() && attempt < 3) {
          release();
          continue;
        }
        const stream = session.request(connectHeaders(req), { endStream: false });
        stream.once("close", release);
        // Whoever takes the stream attaches its own handler; this one only keeps a late reset
        // from crashing the process in between.
        stream.on("error", (err) => this.log.debug({ conn: conn.id, err: err.message }, "HBONE stream error"));
        const headers = await awaitResponse(stream, req);
        return { stream, headers, connectionId: conn.id };
      } catch (err) {
        release();
        throw err;
      }
    }
  }

  /** Pool contents: per key, the stream count of each live connection. */
  stats(): Map<string, Array<{ id: number; streams: number; state: ConnState["t"] }>> {
    const out = new Map<string, Array<{ id: number; streams: number; state: ConnState["t"] }>>();
    for (const c of this.all) {
      const list = out.get(c.key) ?? [];
      list.push({ id: c.id, streams: c.streams, state: c.state.t });
      out.set(c.key, list);
    }
    return out;
  }

  /** GOAWAY every connection; open streams finish. */
  drain(): void {
    this.closed = true;
    for (const c of [...this.all]) {
      if (c.state.t === "connecting") c.destroy(new ProxyError("POOL_CLOSED", "pool drained"));
      else c.drain("pool drained");
    }
  }

  /** Closes everything now. */
  destroy(): void {
    this.closed = true;
    for (const c of [...this.all]) c.destroy(new ProxyError("POOL_CLOSED", "pool destroyed"));
  }

  /** @internal connection left the pool (draining or closed). */
  forget(conn: PooledConnection): void {
    const list = this.conns.get(conn.key);
    if (list !== undefined) {
      const i = list.indexOf(conn);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.conns.delete(conn.key);
    }
    if (conn.state.t === "closed") this.all.delete(conn);
  }

  private acquire(req: HboneRequest): PooledConnection {
    const key = HbonePool.key(req);
    const list = this.conns.get(key) ?? [];
    let conn = list.find((c) => c.hasCapacity());
    if (conn === undefined) {
      conn = new PooledConnection(key, this, req);
      list.push(conn);
      this.conns.set(key, list);
      this.all.add(conn);
    }
    conn.reserve();
    return conn;
  }
}

function connectHeaders(req: HboneRequest): Record<string, string> {
  let forwarded = `for="${formatHostPort(req.client.ip, req.client.port)}"`;
  if (req.serviceHost !== undefined) forwarded += `;host=${req.serviceHost}`;
  const headers: Record<string, string> = {
    [h2.HTTP2_HEADER_METHOD]: h2.HTTP2_METHOD_CONNECT,
    [h2.HTTP2_HEADER_AUTHORITY]: formatHostPort(req.target.ip, req.target.port),
    forwarded,
  };
  if (req.traceparent !== undefined) headers.traceparent = req.traceparent;
  if (req.baggage !== undefined) headers.baggage = req.baggage;
  return headers;
}

function awaitResponse(stream: ClientHttp2Stream, req: HboneRequest): Promise<IncomingHttpHeaders> {
  const target = formatHostPort(req.target.ip, req.target.port);
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      cleanup();
      reject(new ProxyError("HBONE_STREAM_RESET", `CONNECT ${target} failed: ${errorMessage(err)}`, { cause: err }));
    };
    const onClose = (): void => {
      cleanup();
      reject(new ProxyError("HBONE_STREAM_RESET", `CONNECT ${target}: stream closed before a response (code ${stream.rstCode ?? "none"})`));
    };
    const onResponse = (headers: IncomingHttpHeaders): void => {
      cleanup();
      const status = Number(headers[h2.HTTP2_HEADER_STATUS]);
      if (status === 200) {
        resolve(headers);
        return;
      }
      stream.close(h2.NGHTTP2_CANCEL);
      reject(new ProxyError("HBONE_STATUS", `CONNECT ${target} answered ${status}`, { peerStatus: status }));
    };
    const cleanup = (): void => {
      stream.off("error", onError);
      stream.off("close", onClose);
      stream.off("response", onResponse);
    };
    stream.once("error", onError);
    stream.once("close", onClose);
    stream.once("response", onResponse);
  });
}
