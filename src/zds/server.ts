import { EventEmitter } from "node:events";
import { logger, type Logger } from "../shared/log.js";
import { errorMessage } from "../shared/errors.js";
import type { WorkloadInfo } from "./codec.js";
import { ZdsNoConnectionError, ZdsConfigError } from "./errors.js";
import { validateOptions } from "./options.js";
import { ServerConnection, type SendFn } from "./server-conn.js";
import type { DatagramConn, DatagramListener, NetnsOps, NetnsRef, PeerCredentials } from "./transport.js";

/** A pod the agent knows; `netns` is an open handle, a path, or absent when it cannot be found. */
export interface PodEntry {
  uid: string;
  info: WorkloadInfo;
  netns?: NetnsRef | string;
}

/** Where the snapshot comes from: the agent's current pod set, read once per new connection. */
export interface PodInventory {
  list(): Iterable<PodEntry> | Promise<Iterable<PodEntry>>;
}

export interface ZdsServerOptions {
  /** How long a new connection may take to send ZdsHello (Istio: 5 s). */
  helloTimeoutMs: number;
  /** Deadline for each write + Ack (Istio: 5 s). */
  ackTimeoutMs: number;
  /** Peer uids allowed to connect (SO_PEERCRED); root only by default. */
  allowedUids: number[];
}

export const SERVER_DEFAULTS: ZdsServerOptions = { helloTimeoutMs: 5000, ackTimeoutMs: 5000, allowedUids: [0] };

export interface ZdsServerEvents {
  connected: [{ id: number; peer: PeerCredentials }];
  live: [{ id: number }];
  disconnected: [{ id: number; reason: string }];
  peerRejected: [{ peer: PeerCredentials | undefined; reason: string }];
  snapshotSent: [{ id: number; added: number; kept: number; failed: number }];
}

/**
 * The agent's ZDS server: hands every pod netns to ztunnel. Adds go to the newest connection,
 * deletes to all (two are connected during a ztunnel rolling restart).
 */
export class ZdsServer extends EventEmitter<ZdsServerEvents> {
  private readonly opts: ZdsServerOptions;
  private readonly conns: ServerConnection[] = [];
  private nextId = 1;
  private closed = false;
  private readonly log: Logger;

  constructor(
    private readonly listener: DatagramListener,
    private readonly ops: NetnsOps,
    private readonly inventory: PodInventory,
    options?: Partial<ZdsServerOptions> & { log?: Logger },
  ) {
    super();
    const { log, ...rest } = options ?? {};
    this.opts = validateOptions("ZdsServer", rest, SERVER_DEFAULTS);
    if (!Array.isArray(this.opts.allowedUids)) throw new ZdsConfigError("ZdsServer: allowedUids must be an array of uids");
    this.log = log ?? logger("zds-server");
    listener.onConnection((c) => this.accept(c));
  }

  /** Connections that said hello and can take requests. */
  get connectedCount(): number {
    return this.conns.filter((c) => c.live).length;
  }

  /**
   * Sends Add (with the netns fd) to the newest connection and resolves on its success Ack.
   * A handle passed in stays owned by the caller and must stay open until this settles.
   */
  async podAdded(uid: string, info: WorkloadInfo, netns: NetnsRef | string): Promise<void> {
    const conn = this.newestLive();
    if (!conn) throw new ZdsNoConnectionError();
    if (typeof netns !== "string" && netns.closed) {
      throw new ZdsConfigError(`podAdded(${uid}): the netns handle is already closed; keep it open until podAdded settles`);
    }
    const owned = typeof netns === "string" ? this.ops.open(netns) : undefined;
    try {
      const ref = owned ?? (netns as NetnsRef);
      await conn.requestOk({ type: "add", uid, info }, `Add of pod ${uid}`, ref.fd);
    } finally {
      owned?.close();
    }
  }

  /** Sends Del to every connection; resolves when all acked, rejects with the first failure. */
  async podDeleted(uid: string): Promise<void> {
    const live = this.conns.filter((c) => c.live);
    const results = await Promise.allSettled(live.map((c) => c.requestOk({ type: "del", uid }, `Del of pod ${uid}`)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listener.close();
    for (const c of [...this.conns]) c.close("ZDS server shutting down");
  }

  private newestLive(): ServerConnection | undefined {
    for (let i = this.conns.length - 1; i >= 0; i--) if (this.conns[i]!.live) return this.conns[i];
    return undefined;
  }

  private accept(conn: DatagramConn): void {
    if (this.closed) {
      conn.close();
      return;
    }
    let peer: PeerCredentials | undefined;
    try {
      peer = conn.peerCredentials();
    } catch (err) {
      this.reject(conn, undefined, `cannot read peer credentials: ${errorMessage(err)}`);
      return;
    }
    // WorkloadInfo decides which identity ztunnel serves: only a trusted peer may receive it.
    if (!this.opts.allowedUids.includes(peer.uid)) {
      this.reject(conn, peer, `peer uid ${peer.uid} (pid ${peer.pid}) is not allowed; allowed uids: ${this.opts.allowedUids.join(", ")}`);
      return;
    }
    const id = this.nextId++;
    const sc = new ServerConnection(id, conn, this.ops, this.opts, this.log, {
      live: (c) => this.onLive(c),
      closed: (c, reason) => this.onClosed(c, reason),
    });
    this.conns.push(sc);
    this.log.info({ conn: id, peer }, "ztunnel connected");
    this.emit("connected", { id, peer });
  }

  private reject(conn: DatagramConn, peer: PeerCredentials | undefined, reason: string): void {
    this.log.warn({ peer, reason }, "refused a ZDS connection");
    conn.close();
    this.emit("peerRejected", { peer, reason });
  }

  private onLive(c: ServerConnection): void {
    this.emit("live", { id: c.id });
    // The snapshot is the first job in this connection's send order: later Add/Del queue behind it.
    c.runInOrder((send) => this.sendSnapshot(c, send)).catch((err: unknown) => {
      // Without a complete snapshot ztunnel can never become ready on this connection: drop
      // it, ztunnel reconnects and gets a fresh one.
      this.log.warn({ conn: c.id, err: errorMessage(err) }, "snapshot not completed; dropping the connection");
      c.close(`snapshot failed: ${errorMessage(err)}`);
    });
  }

  private async sendSnapshot(c: ServerConnection, send: SendFn): Promise<void> {
    const pods = await this.inventory.list();
    let added = 0;
    let kept = 0;
    let failed = 0;
    for (const pod of pods) {
      if (c.isClosed) return;
      const ref = this.openForSnapshot(pod);
      if (!ref) {
        const error = await send({ type: "keep", uid: pod.uid }, `Keep of pod ${pod.uid}`);
        if (error === "") kept++;
        else {
          failed++;
          this.log.warn({ conn: c.id, uid: pod.uid, ackError: error }, "ztunnel rejected a snapshot Keep");
        }
        continue;
      }
      try {
        const error = await send({ type: "add", uid: pod.uid, info: pod.info }, `Add of pod ${pod.uid}`, ref.ref.fd);
        if (error === "") added++;
        else {
          // ztunnel keeps retrying a proxy that failed to start; the snapshot goes on.
          failed++;
          this.log.warn({ conn: c.id, uid: pod.uid, ackError: error }, "ztunnel rejected a snapshot Add");
        }
      } catch (err) {
        if (c.isClosed) throw err;
        failed++; // this Add could not even be encoded (too large); the others still go
        this.log.error({ conn: c.id, uid: pod.uid, err: errorMessage(err) }, "snapshot Add not sent");
      } finally {
        if (ref.owned) ref.ref.close();
      }
    }
    const error = await send({ type: "snapshotSent" }, "SnapshotSent");
    if (error !== "") this.log.warn({ conn: c.id, ackError: error }, "ztunnel rejected SnapshotSent");
    this.log.info({ conn: c.id, added, kept, failed }, "snapshot sent");
    this.emit("snapshotSent", { id: c.id, added, kept, failed });
  }

  private openForSnapshot(pod: PodEntry): { ref: NetnsRef; owned: boolean } | undefined {
    if (pod.netns === undefined) return undefined;
    if (typeof pod.netns !== "string") return pod.netns.closed ? undefined : { ref: pod.netns, owned: false };
    try {
      return { ref: this.ops.open(pod.netns), owned: true };
    } catch (err) {
      // Istio's rule: a pod whose netns we cannot open is kept, not dropped.
      this.log.info({ uid: pod.uid, netns: pod.netns, err: errorMessage(err) }, "netns not openable; sending Keep");
      return undefined;
    }
  }

  private onClosed(c: ServerConnection, reason: string): void {
    const i = this.conns.indexOf(c);
    if (i >= 0) this.conns.splice(i, 1);
    this.emit("disconnected", { id: c.id, reason });
  }
}
