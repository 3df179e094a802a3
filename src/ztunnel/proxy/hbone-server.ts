import type { Server, Socket } from "node:net";
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from "node:tls";
import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import { canonicalIp, formatHostPort, parseHostPort } from "../state/ip.js";
import type { WorkloadCert } from "../tls/ca.js";
import { formatIdentity, type Identity } from "../tls/identity.js";
import { serverTlsOptions, verifyTrustDomain } from "../tls/peer.js";
import { ProxyError, upstreamConnectError } from "./errors.js";
import { H2Connection, type H2ConnectionOptions } from "./h2/connection.js";
import { ErrorCode } from "./h2/frames.js";
import { headerObject } from "./h2/headers.js";
import type { HeaderField } from "./h2/hpack-table.js";
import type { H2Stream } from "./h2/stream.js";
import { DEFAULT_MAX_HEADER_LIST_SIZE, hboneH2Options, PROXY_KEEPALIVE } from "./h2-options.js";
import { UNLIMITED, type PodAdmission } from "./budget.js";
import { Deadlines } from "./deadlines.js";
import { ConnectionLimiter, guardAcceptErrors, ThrottledLog } from "./limits.js";
import { Relay, type RelayResult } from "./relay.js";
import { LOOP_PORTS, type AuthorizationDecision, type Authorizer, type HboneServerOptions, type OpenStream } from "./hbone-server-types.js";

export { LOOP_PORTS };
export type { AuthorizationContext, AuthorizationDecision, Authorizer, CertProvider, HboneServerOptions, InboundRecord, OpenStream } from "./hbone-server-types.js";

// HBONE server for one pod (port 15008 in its netns): mTLS with the pod's identity, a client
// certificate from our trust domain required, then one CONNECT stream per tunnelled TCP
// connection, validated, authorised, and relayed to the app inside the pod.

/** The client of one HBONE connection: its verified identity and address. */
interface Peer {
  readonly identity: Identity;
  /** Canonical IP ("" when the socket could not tell). */
  readonly ip: string;
  readonly port: number;
}

type Target = { readonly ip: string; readonly port: number };

/** The CONNECT's success response, the same for every stream. */
const OK_RESPONSE: readonly HeaderField[] = Object.freeze([Object.freeze([":status", "200"]) as HeaderField]);

const ALLOW_ALL: Authorizer = { authorize: () => ({ allow: true, policy: undefined, reason: "no authorizer configured" }) };

export class HboneServer {
  private listener: Server | undefined;
  /** Built at the first connection from `cert`; dropped when the certificate is renewed. */
  private tls: TlsServer | undefined;
  /** The pod's current certificate (the one the next TLS server is built from). */
  private cert: WorkloadCert | undefined;
  /** A certificate no TLS context could be built from: not retried until a renewal. */
  private unusableCert: WorkloadCert | undefined;
  private readonly h2: H2ConnectionOptions;
  private readonly sessions = new Set<H2Connection>();
  private readonly relays = new Set<Relay>();
  private readonly limiter: ConnectionLimiter;
  private readonly log: Logger;
  private readonly throttled: ThrottledLog;
  private readonly tlsFailures: ThrottledLog;
  private readonly podIps: ReadonlySet<string>;
  private readonly authorizer: Authorizer;
  private readonly admission: PodAdmission;
  /** Handshake slots by peer address:port (the TLS socket reports its wrapped socket's). */
  private readonly handshaking = new Map<string, () => void>();
  /** Upstream connects under way (upstreamConnectTimeoutMs, one timer for all). */
  private readonly connectDeadlines: Deadlines;
  private unsubscribeRenew: (() => void) | undefined;
  /** drain() or close() was called: no new connections, handed-over ones included. */
  private draining = false;

  constructor(private readonly opts: HboneServerOptions) {
    this.log = opts.log ?? logger("ztunnel.hbone.server");
    this.throttled = new ThrottledLog(this.log);
    this.tlsFailures = new ThrottledLog(this.log);
    this.limiter = new ConnectionLimiter(opts.maxConnections ?? 10_000);
    this.podIps = new Set(opts.podIps.map((ip) => canonicalIp(ip) ?? ip));
    this.authorizer = opts.authorizer ?? ALLOW_ALL;
    this.admission = opts.admission ?? UNLIMITED;
    this.connectDeadlines = new Deadlines(opts.upstreamConnectTimeoutMs ?? 10_000);
    this.h2 = hboneH2Options("server", opts.maxHeaderListSize ?? DEFAULT_MAX_HEADER_LIST_SIZE, opts.maxConcurrentStreams ?? 1000);
  }

  async start(): Promise<void> {
    // The certificate is fetched now (a pod without one must not look enrolled), but its TLS
    // context is built at the first connection: most pods on a node never get inbound HBONE
    // in a given worker, and a context costs ~3 ms of CPU and ~40 KiB per pod per worker.
    this.cert = await this.opts.certs.get(this.opts.identity);
    this.unsubscribeRenew = this.opts.certs.onRenew?.(this.opts.identity, (renewed) => {
      this.cert = renewed;
      // New connections get a server built from the renewed certificate; handshakes already
      // under way finish on the old one, which is then collected.
      this.tls = undefined;
    });
    const server = await this.opts.socketFactory.listenTcp({ address: this.opts.listen.address, port: this.opts.listen.port });
    this.listener = server;
    guardAcceptErrors(server, this.throttled, `hbone ${formatIdentity(this.opts.identity)}`, (code) => this.admission.exhausted(code, "HBONE accept"));
    const place = this.opts.place;
    server.on("connection", (sock: Socket) => {
      if (place === undefined) return this.onConnection(sock, undefined);
      const placed = place(sock);
      if (placed !== undefined) this.onConnection(sock, placed);
    });
  }

  /** A connection another worker accepted for this pod, served like one accepted here; `placed` runs at its close. */
  adopt(sock: Socket, placed: () => void): void {
    if (!this.draining) return this.onConnection(sock, placed);
    sock.on("close", placed);
    sock.destroy();
  }

  address(): { address: string; port: number } {
    const a = this.listener?.address();
    if (a === null || a === undefined || typeof a === "string") throw new Error("HBONE server is not listening");
    return { address: a.address, port: a.port };
  }

  get stats(): { connections: number; streams: number; rejected: number } {
    return { connections: this.limiter.stats.active, streams: this.relays.size, rejected: this.limiter.stats.rejected };
  }

  /** Bytes held in our buffers across all relays (backpressure checks). */
  bufferedBytes(): number {
    let n = 0;
    for (const r of this.relays) n += r.buffered();
    return n;
  }

  /** Stop accepting, GOAWAY every session; open streams may finish. */
  async drain(): Promise<void> {
    this.draining = true;
    this.unsubscribeRenew?.();
    const closed = this.listener === undefined ? Promise.resolve() : new Promise<void>((r) => this.listener?.close(() => r()));
    for (const s of this.sessions) s.close();
    await closed;
  }

  /** Close everything now (pod removed). */
  async close(): Promise<void> {
    const drained = this.drain();
    for (const r of this.relays) r.abort(new ProxyError("POOL_CLOSED", "HBONE server closed"));
    for (const s of this.sessions) s.destroy();
    await drained;
  }

  private onConnection(sock: Socket, placed: (() => void) | undefined): void {
    // Every path below either keeps the socket or destroys it: 'close' comes either way.
    if (placed !== undefined) sock.on("close", placed);
    const release = this.limiter.tryAcquire();
    if (release === undefined) {
      this.throttled.warn({ max: this.limiter.max }, "HBONE connection limit reached; refusing connections");
      sock.destroy();
      return;
    }
    // The connection's descriptor counts against the pod's share; until its handshake is done
    // it also holds one of the bounded handshake slots (unfinished TLS holds buffers).
    const admitted = this.admission.connection("inbound");
    const handshaking = admitted === undefined ? undefined : this.admission.handshake();
    if (admitted === undefined || handshaking === undefined) {
      release();
      admitted?.();
      sock.destroy();
      return;
    }
    const key = `${sock.remoteAddress ?? ""}|${sock.remotePort ?? 0}`;
    this.handshaking.set(key, handshaking);
    sock.once("close", () => {
      if (this.handshaking.get(key) === handshaking) this.handshaking.delete(key);
      release();
      admitted();
      handshaking();
    });
    // The TLS socket inherits this. HBONE half-closes per stream (END_STREAM), never on the
    // transport: a FIN from the client must close the connection, not leave it half-open.
    sock.allowHalfOpen = false;
    sock.setKeepAlive(true, PROXY_KEEPALIVE.idleSec * 1000);
    sock.on("error", (err) => this.log.debug({ err: err.message }, "HBONE socket error"));
    const tls = this.tlsServer();
    if (tls === undefined) {
      sock.destroy();
      return;
    }
    tls.emit("connection", sock);
  }

  /**
   * The pod's TLS server, built on first use with the pod's certificate as its only context
   * (tls.createServer always builds one, and Node 20 neither accepts a ready `secureContext`
   * there nor calls SNICallback for a ClientHello without SNI, which is what HBONE peers send).
   * It never listens: it gives us the handshake timeout and client-certificate verification
   * for sockets accepted through the factory.
   */
  private tlsServer(): TlsServer | undefined {
    if (this.tls !== undefined) return this.tls;
    const cert = this.cert;
    if (cert === undefined || cert === this.unusableCert) return undefined;
    let tls: TlsServer;
    try {
      tls = createTlsServer({ ...serverTlsOptions(cert), handshakeTimeout: this.opts.handshakeTimeoutMs ?? 10_000 });
    } catch (err) {
      this.unusableCert = cert;
      this.tlsFailures.warn(
        { identity: formatIdentity(this.opts.identity), err: errorMessage(err) },
        "HBONE: cannot build a TLS context from the pod's certificate; refusing inbound connections until it is renewed",
      );
      return undefined;
    }
    tls.on("secureConnection", (sock: TLSSocket) => {
      const key = `${sock.remoteAddress ?? ""}|${sock.remotePort ?? 0}`;
      this.handshaking.get(key)?.();
      this.handshaking.delete(key);
      this.onSecure(sock);
    });
    tls.on("tlsClientError", (err: Error, sock: TLSSocket) => {
      this.log.debug({ peer: sock.remoteAddress, err: err.message }, "HBONE TLS handshake failed");
      // With a listener attached, Node leaves the socket open: close it ourselves.
      sock.destroy();
    });
    this.tls = tls;
    return tls;
  }

  private onSecure(sock: TLSSocket): void {
    let identity: Identity;
    try {
      identity = verifyTrustDomain(sock, trustDomainOf(this.opts.identity));
    } catch (err) {
      this.log.info({ peer: sock.remoteAddress, err: errorMessage(err) }, "HBONE client refused");
      sock.destroy();
      return;
    }
    // What every CONNECT of this connection is judged by, worked out once per connection.
    const peer: Peer = { identity, ip: canonicalIp(sock.remoteAddress ?? "") ?? "", port: sock.remotePort ?? 0 };
    const session = new H2Connection(sock, this.h2);
    this.sessions.add(session);
    session.once("close", (err) => {
      this.sessions.delete(session);
      if (err !== undefined) this.log.debug({ err: err.message }, "HBONE session error");
    });
    session.on("stream", (stream, fields) => {
      try {
        this.onStream(stream, headerObject(fields), peer);
      } catch (err) {
        this.streamFailed(stream, err);
      }
    });
  }

  // One CONNECT: validate → authorize → upstream connect → 200 and relay. Synchronous up to
  // the upstream connect (an authorizer that answers with a promise is awaited), so the
  // common path costs no promise or microtask hop per stream.
  private onStream(stream: H2Stream, headers: Readonly<Record<string, string>>, peer: Peer): void {
    stream.on("error", this.onStreamError);
    const authority = headers[":authority"] ?? "";
    const target = this.validate(headers);
    if (target instanceof ProxyError) return this.refuse(stream, peer, authority, target);
    let decision: AuthorizationDecision | Promise<AuthorizationDecision>;
    try {
      decision = this.authorizer.authorize({ source: peer.identity, sourceIp: peer.ip, destination: target });
    } catch (err) {
      decision = failedDecision(err);
    }
    if (decision instanceof Promise) {
      decision
        .then(
          (d) => this.admit(stream, peer, authority, target, d),
          (err: unknown) => this.admit(stream, peer, authority, target, failedDecision(err)),
        )
        .catch((err: unknown) => this.streamFailed(stream, err));
      return;
    }
    this.admit(stream, peer, authority, target, decision);
  }

  private readonly onStreamError = (err: Error): void => this.log.debug({ err: err.message }, "HBONE stream error");

  private refuse(stream: H2Stream, peer: Peer, authority: string, err: ProxyError): void {
    this.log.debug({ authority, code: err.code, err: err.message }, "HBONE CONNECT refused");
    if (!stream.closed) {
      stream.respond([[":status", String(err.status)]], true);
      // The request body is not wanted (RFC 9113 §8.1); nghttp2 said so the same way.
      if (!stream.remoteEnded) stream.close(ErrorCode.NO_ERROR);
    }
    this.record(peer, authority, err.status, err, undefined, undefined);
  }

  private record(peer: Peer, authority: string, status: number, error: ProxyError | undefined, result: RelayResult | undefined, open: OpenStream | undefined): void {
    const onRecord = this.opts.onRecord;
    if (onRecord === undefined) return;
    onRecord({
      source: peer.identity,
      sourceIp: peer.ip,
      sourceAddr: formatHostPort(peer.ip, peer.port),
      destination: authority,
      status,
      error,
      result,
      ...(open !== undefined ? { stream: open } : {}),
    });
  }

  /** Allowed (or not) by policy: take a descriptor and connect to the app. */
  private admit(stream: H2Stream, peer: Peer, authority: string, target: Target, decision: AuthorizationDecision): void {
    if (!decision.allow) return this.refuse(stream, peer, authority, new ProxyError("AUTHORIZATION_DENIED", `${formatIdentity(peer.identity)} → ${authority}: ${decision.reason}`));
    if (stream.closed) return;
    // The upstream socket is one more descriptor of this pod.
    const admitted = this.admission.connection("inbound");
    if (admitted === undefined) return this.refuse(stream, peer, authority, new ProxyError("CONNECTION_LIMIT", `${authority}: the pod's connection budget is used up`));
    stream.on("close", admitted); // idempotent; 'close' comes once
    const upstream = this.opts.socketFactory.connectTcp({
      host: target.ip,
      port: target.port,
      noDelay: true,
      keepAlive: PROXY_KEEPALIVE,
      ...(this.opts.preserveSource !== false && peer.ip !== "" ? { sourceAddress: peer.ip } : {}),
    });
    let settled = false;
    const settle = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      deadline.cancel();
      // The three listeners stay: settled, they do nothing. Removing a listener deletes a key of
      // the emitter's listener table, which leaves the table a slow dictionary for the rest of
      // the stream's and socket's life.
      if (err === undefined) return this.relay(stream, peer, authority, target, upstream);
      upstream.on("error", ignore);
      upstream.destroy();
      if (!stream.closed) this.refuse(stream, peer, authority, upstreamConnectError(err, authority));
    };
    const onConnect = (): void => settle(undefined);
    // The client gave up while we were connecting.
    const onClientClose = (): void => {
      if (!settled) settle(new Error("client closed the stream"));
    };
    const deadline = this.connectDeadlines.add(() =>
      settle(Object.assign(new Error(`no answer within ${this.connectDeadlines.lengthMs} ms`), { code: "ETIMEDOUT" })),
    );
    upstream.on("connect", onConnect);
    upstream.on("error", settle);
    stream.on("close", onClientClose);
  }

  private relay(stream: H2Stream, peer: Peer, authority: string, target: Target, upstream: Socket): void {
    stream.respond(OK_RESPONSE);
    // Reading starts in the same tick as the response, so the stream never ends unread (which
    // Node would turn into RST_STREAM(NO_ERROR)).
    // The end is reported one microtask later, as a promise's would be, without the promises.
    let closeTracking: (() => void) | undefined;
    const relay: Relay = new Relay(upstream, stream, this.opts.relay, (result) =>
      queueMicrotask(() => {
        this.relays.delete(relay);
        try {
          closeTracking?.();
          this.record(peer, authority, 200, result.error instanceof ProxyError ? result.error : undefined, result, open);
        } catch (err) {
          this.streamFailed(stream, err);
        }
      }),
    );
    this.relays.add(relay);
    const open: OpenStream = {
      source: peer.identity,
      sourceIp: peer.ip,
      sourcePort: peer.port,
      destination: target,
      authority,
      abort: (reason) => relay.abort(new ProxyError("AUTHORIZATION_DENIED", reason)),
    };
    closeTracking = this.opts.onOpen?.(open);
  }

  private streamFailed(stream: H2Stream, err: unknown): void {
    this.log.warn({ err: errorMessage(err) }, "HBONE stream handling failed");
    if (!stream.closed) stream.close(ErrorCode.INTERNAL_ERROR);
  }

  private validate(headers: Readonly<Record<string, string>>): Target | ProxyError {
    const method = headers[":method"];
    if (method !== "CONNECT") return new ProxyError("BAD_REQUEST", `method ${String(method)} is not CONNECT`);
    const authority = headers[":authority"] ?? "";
    const target = parseHostPort(authority);
    if (target === undefined) return new ProxyError("BAD_REQUEST", `authority "${authority}" is not ip:port`);
    if (!this.podIps.has(target.ip)) return new ProxyError("BAD_REQUEST", `${target.ip} is not an IP of this pod`);
    if (LOOP_PORTS.has(target.port)) return new ProxyError("BAD_REQUEST", `port ${target.port} is a ztunnel port (loop)`);
    return target;
  }
}

/** Fail closed: an authorizer that cannot decide denies. */
function failedDecision(err: unknown): AuthorizationDecision {
  return { allow: false, policy: undefined, reason: `authorization failed: ${errorMessage(err)}` };
}

function ignore(): void {}

const trustDomainOf = (id: Identity): string => id.trustDomain;
