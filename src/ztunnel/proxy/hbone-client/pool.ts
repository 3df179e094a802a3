import { logger } from "../../../shared/log.js";
import type { H2Stream } from "../h2/stream.js";
import { formatHostPort } from "../../state/ip.js";
import { identityUri, type Identity } from "../../tls/identity.js";
import { ProxyError } from "../errors.js";
import { DEFAULT_MAX_HEADER_LIST_SIZE } from "../h2-options.js";
import { awaitResponse, connectHeaders } from "./connect-stream.js";
import { PooledConnection, type ConnState, type PoolHost, type PoolSettings } from "./connection.js";
import type { HboneClientOptions, HboneRequest, HboneStream } from "./types.js";

/** RFC 9113 error code: the stream was refused before any processing. */
const REFUSED_STREAM = 0x7;

/** The HTTP/2 error code an error carries (H2StreamError and friends), if any. */
function codeOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === "number" ? code : undefined;
}

// Identity lists are frozen and reused (one per workload per state), so their key strings are
// worked out once per list rather than once per CONNECT.
const listKeys = new WeakMap<readonly Identity[], string>();

function identitiesKey(ids: readonly Identity[]): string {
  let k = listKeys.get(ids);
  if (k === undefined) {
    k = ids.map(identityUri).sort().join(",");
    // Only a frozen list cannot change under its cached key.
    if (Object.isFrozen(ids)) listKeys.set(ids, k);
  }
  return k;
}

// HBONE client pool: pooled mTLS HTTP/2 connections carrying one CONNECT stream per proxied TCP
// connection. A connection belongs to exactly one (source pod, source identity, destination
// identities, destination address): its socket lives in the source pod's netns, so two pods
// never share one. Each connection carries at most maxStreams streams; the next opens another.

export class HbonePool implements PoolHost {
  readonly settings: PoolSettings;
  private readonly conns = new Map<string, PooledConnection[]>();
  private readonly all = new Set<PooledConnection>();
  private closed = false;
  /** One handler for every stream (called with the stream as `this`), not a closure per CONNECT. */
  private readonly onStreamError: (this: H2Stream, err: Error) => void;

  constructor(opts: HboneClientOptions) {
    this.settings = {
      certs: opts.certs,
      maxStreams: opts.maxStreamsPerConnection ?? 100,
      idleTimeoutMs: opts.idleTimeoutMs ?? 300_000,
      pingIntervalMs: opts.pingIntervalMs ?? 10_000,
      pingTimeoutMs: opts.pingTimeoutMs ?? 20_000,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 10_000,
      maxHeaderListSize: opts.maxHeaderListSize ?? DEFAULT_MAX_HEADER_LIST_SIZE,
      log: opts.log ?? logger("ztunnel.hbone.client"),
    };
    const log = this.settings.log;
    this.onStreamError = function (this: H2Stream, err: Error): void {
      log.debug({ stream: this.id, err: err.message }, "HBONE stream error");
    };
  }

  static key(req: HboneRequest): string {
    return `${req.sourcePodUid}|${identityUri(req.sourceIdentity)}|${identitiesKey(req.destinationIdentities)}|${formatHostPort(req.hboneAddress.ip, req.hboneAddress.port)}`;
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
      let refused = false;
      try {
        // A ready connection (the common case once the pool is warm) is used without a
        // promise and a microtask hop per CONNECT.
        const ready = conn.state;
        const session =
          ready.t === "ready"
            ? ready.session
            : await conn.session().catch((err: unknown) => {
                // Picked just as it began to drain (GOAWAY raced us): nothing was sent yet.
                refused = conn.state.t === "draining";
                throw err;
              });
        if (conn.overRemoteLimit() && attempt < 3) {
          release();
          continue;
        }
        const stream = session.request(connectHeaders(req));
        stream.on("close", release); // idempotent; 'close' comes once
        // Whoever takes the stream attaches its own handler; this one only keeps a late reset
        // from crashing the process in between.
        stream.on("error", this.onStreamError);
        try {
          const headers = await awaitResponse(stream, req);
          return { stream, headers, connectionId: conn.id };
        } catch (err) {
          // REFUSED_STREAM (also what streams above a GOAWAY's last-stream-id get): the server
          // never processed the CONNECT and the client's bytes are still held back, so another
          // connection may carry it (RFC 9113 §8.7). This is what a peer ztunnel's upgrade does.
          refused = stream.rstCode === REFUSED_STREAM || codeOf((err as Error).cause) === REFUSED_STREAM;
          throw err;
        }
      } catch (err) {
        release();
        if (refused && attempt < 3 && !this.closed) {
          this.settings.log.debug({ conn: conn.id, attempt }, "CONNECT refused by a draining connection; retrying on another");
          continue;
        }
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
