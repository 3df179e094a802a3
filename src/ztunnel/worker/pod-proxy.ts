import type { Server, Socket } from "node:net";
import { dupFd, NetnsHandle, originalDst } from "../../native/index.js";
import { errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/log.js";
import { InPodSocketFactory } from "../../sockets/index.js";
import type { SocketFactory } from "../../sockets/socket-factory.js";
import { ProxyError } from "../proxy/errors.js";
import { HbonePool } from "../proxy/hbone-client.js";
import { HboneServer, LOOP_PORTS, type InboundRecord } from "../proxy/hbone-server.js";
import { ConnectionLimiter, guardAcceptErrors, ThrottledLog } from "../proxy/limits.js";
import { proxyOutboundHbone, proxyPassthrough, type OutboundResult } from "../proxy/outbound.js";
import { canonicalIp, formatHostPort } from "../state/ip.js";
import type { WorkloadStore } from "../state/store.js";
import { formatIdentity } from "../tls/identity.js";
import type { WorkerCerts } from "./certs.js";
import type { AccessRecord, ListenerInfo, PodSpec, WorkerSettings } from "./messages.js";
import { HBONE_PORT, identityOf, planOutbound, type OutboundPlan } from "./resolve.js";
import type { WorkerTelemetry } from "./telemetry.js";

// One pod on one worker: this worker's own copy of the pod's netns fd, its three SO_REUSEPORT
// listeners inside the pod (15001 outbound, 15006 inbound plaintext, 15008 inbound HBONE), its
// HBONE client pool (sockets in the pod's netns, so never shared with another pod) and every
// connection it accepted. start() either brings all listeners up or leaves nothing behind.

export const OUTBOUND_PORT = 15001;
export const INBOUND_PLAINTEXT_PORT = 15006;
const CLOSE_WAIT_MS = 2_000;
/** Per pod and worker, for each of outbound+plaintext inbound and HBONE inbound. */
const MAX_CONNECTIONS_PER_POD = 10_000;

export interface PodProxyDeps {
  readonly settings: WorkerSettings;
  readonly store: WorkloadStore;
  readonly certs: WorkerCerts;
  readonly telemetry: WorkerTelemetry;
  readonly log: Logger;
  /** Reports fd numbers this worker opens/closes (the main thread cleans up after a crash). */
  readonly fdOpened: (fd: number) => void;
  readonly fdClosed: (fd: number) => void;
}

export class PodProxy {
  private netns: NetnsHandle | undefined;
  private factory: SocketFactory | undefined;
  private readonly servers: Server[] = [];
  private hbone: HboneServer | undefined;
  private pool: HbonePool | undefined;
  private readonly downstreams = new Set<Socket>();
  private retained = false;
  /** Cap on this pod's plain TCP connections on this worker (15001 + 15006). */
  private readonly limiter = new ConnectionLimiter(MAX_CONNECTIONS_PER_POD);
  private readonly throttled: ThrottledLog;
  private closed = false;
  readonly listeners: ListenerInfo[] = [];

  constructor(
    readonly spec: PodSpec,
    private readonly deps: PodProxyDeps,
  ) {
    this.throttled = new ThrottledLog(deps.log);
  }

  async start(): Promise<readonly ListenerInfo[]> {
    const { settings, certs } = this.deps;
    try {
      const fd = dupFd(this.spec.netnsFd);
      this.deps.fdOpened(fd);
      this.netns = NetnsHandle.fromFd(fd);
      const factory = new InPodSocketFactory(this.netns, { mark: settings.packetMark, reusePort: settings.reusePort });
      this.factory = factory;
      certs.retain(this.spec.cert);
      this.retained = true;
      this.pool = new HbonePool({ certs, maxStreamsPerConnection: settings.poolMaxStreams, idleTimeoutMs: settings.poolIdleMs, log: this.deps.log });
      const address = settings.ipv6 ? "::" : "0.0.0.0";
      const outbound = await factory.listenTcp({ address, port: OUTBOUND_PORT });
      this.adopt(outbound, "outbound", (s) => void this.onOutbound(s));
      const inbound = await factory.listenTcp({ address, port: INBOUND_PLAINTEXT_PORT, transparent: true });
      this.adopt(inbound, "inbound-plaintext", (s) => void this.onInboundPlaintext(s));
      this.hbone = new HboneServer({
        identity: this.spec.identity,
        certs,
        podIps: this.spec.ips,
        socketFactory: factory,
        listen: { address, port: HBONE_PORT },
        maxConnections: MAX_CONNECTIONS_PER_POD,
        onRecord: (rec) => this.onHboneRecord(rec),
        log: this.deps.log,
      });
      await this.hbone.start();
      this.listeners.push(this.info(address, HBONE_PORT, "inbound-hbone"));
      if (this.closed) throw new Error("pod removed while its listeners were starting");
      return this.listeners;
    } catch (err) {
      await this.close();
      throw new Error(`listeners of pod ${this.spec.namespace}/${this.spec.name} on worker ${settings.index}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Pod removed: close listeners and every connection now, then our netns copy. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.downstreams) s.resetAndDestroy();
    this.downstreams.clear();
    this.pool?.destroy();
    const closing: Promise<void>[] = this.servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    this.servers.length = 0;
    if (this.hbone !== undefined) closing.push(this.hbone.close());
    this.hbone = undefined;
    // Every connection was destroyed above, so the close callbacks come promptly; the bound
    // only guards against a connection Node still counts while it tears down.
    await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, CLOSE_WAIT_MS).unref())]);
    this.closeNetns();
  }

  /**
   * SIGTERM: stop accepting and GOAWAY; open connections may go on until close(). Does not
   * wait for the listeners' close callbacks: those fire only once every accepted
   * connection has ended, which is what the drain deadline is for.
   */
  stopAccepting(): void {
    for (const s of this.servers) s.close();
    this.servers.length = 0;
    void this.hbone?.drain();
    this.pool?.drain();
  }

  /** Connections still open (outbound and plaintext inbound accepted here, HBONE streams). */
  get activeConnections(): number {
    return this.downstreams.size + (this.hbone?.stats.streams ?? 0);
  }

  private closeNetns(): void {
    if (this.retained) {
      this.deps.certs.release(this.spec.identity);
      this.retained = false;
    }
    const n = this.netns;
    this.netns = undefined;
    if (n !== undefined && !n.closed) {
      const fd = n.fd;
      n.close();
      this.deps.fdClosed(fd);
    }
  }

  private adopt(server: Server, role: ListenerInfo["role"], handler: (s: Socket) => void): void {
    this.servers.push(server);
    // EMFILE and friends: logged once per interval, the listener keeps running.
    guardAcceptErrors(server, this.throttled, `${role} ${this.spec.namespace}/${this.spec.name}`);
    server.on("connection", (s: Socket) => {
      this.deps.telemetry.accepted();
      const release = this.closed ? undefined : this.limiter.tryAcquire();
      if (release === undefined) {
        if (!this.closed) this.throttled.warn({ uid: this.spec.uid, max: this.limiter.max }, "connection limit of the pod reached; refusing connections");
        s.resetAndDestroy();
        return;
      }
      this.downstreams.add(s);
      s.once("close", () => {
        this.downstreams.delete(s);
        release();
      });
      handler(s);
    });
    const a = server.address();
    const address = a !== null && typeof a === "object" ? a.address : "";
    const port = a !== null && typeof a === "object" ? a.port : 0;
    this.listeners.push(this.info(address, port, role));
  }

  private info(address: string, port: number, role: ListenerInfo["role"]): ListenerInfo {
    const { settings } = this.deps;
    return { address, port, protocol: role === "inbound-hbone" ? "HBONE" : "TCP", role, worker: settings.index, mark: settings.packetMark };
  }

  private async onOutbound(s: Socket): Promise<void> {
    const { telemetry, store } = this.deps;
    const started = Date.now();
    const client = { ip: canonicalIp(s.remoteAddress ?? "") ?? "", port: s.remotePort ?? 0 };
    telemetry.opened("outbound");
    let plan: OutboundPlan;
    let dst = "";
    try {
      const od = originalDst(fdOf(s));
      const ip = canonicalIp(od.address) ?? od.address;
      dst = formatHostPort(ip, od.port);
      plan = planOutbound(store, { ip, port: od.port });
    } catch (err) {
      plan = { t: "refuse", error: err instanceof ProxyError ? err : new ProxyError("UNKNOWN_DESTINATION", `no original destination: ${errorMessage(err)}`) };
    }
    let result: OutboundResult;
    const pool = this.pool;
    const factory = this.factory;
    if (plan.t === "refuse" || pool === undefined || factory === undefined) {
      s.resetAndDestroy();
      result = { ok: false, error: plan.t === "refuse" ? plan.error : new ProxyError("POOL_CLOSED", "pod is being removed") };
    } else if (plan.t === "hbone") {
      result = await proxyOutboundHbone(s, pool, {
        sourcePodUid: this.spec.uid,
        sourceIdentity: this.spec.identity,
        socketFactory: factory,
        destinationIdentities: plan.identities,
        hboneAddress: plan.hboneAddress,
        target: plan.target,
        client,
        ...(plan.service !== undefined ? { serviceHost: plan.service } : {}),
      });
    } else {
      result = await proxyPassthrough(s, factory, plan.target);
    }
    const w = plan.t === "refuse" ? undefined : plan.workload;
    const rec: AccessRecord = {
      direction: "outbound",
      "src.addr": formatHostPort(client.ip, client.port),
      "src.workload": this.spec.name,
      "src.namespace": this.spec.namespace,
      "src.identity": formatIdentity(this.spec.identity),
      "dst.addr": plan.t === "refuse" ? dst : formatHostPort(plan.target.ip, plan.target.port),
      "dst.hbone_addr": plan.t === "hbone" ? formatHostPort(plan.hboneAddress.ip, plan.hboneAddress.port) : undefined,
      "dst.service": plan.t === "refuse" ? undefined : plan.service,
      "dst.workload": w?.name,
      "dst.namespace": w?.namespace,
      "dst.identity": plan.t === "hbone" && w !== undefined ? formatIdentity(identityOf(w)) : undefined,
      ...outcome(result, started),
    };
    const sent = result.ok ? result.result.bytesAtoB : 0;
    const recv = result.ok ? result.result.bytesBtoA : 0;
    telemetry.closed("outbound", sent, recv, !result.ok || result.result.error !== undefined, rec);
  }

  private async onInboundPlaintext(s: Socket): Promise<void> {
    const { telemetry } = this.deps;
    const started = Date.now();
    const client = { ip: canonicalIp(s.remoteAddress ?? "") ?? "", port: s.remotePort ?? 0 };
    telemetry.opened("inbound");
    let result: OutboundResult;
    let dst = "";
    const factory = this.factory;
    try {
      const od = originalDst(fdOf(s));
      const ip = canonicalIp(od.address) ?? od.address;
      dst = formatHostPort(ip, od.port);
      if (LOOP_PORTS.has(od.port)) throw new ProxyError("BAD_REQUEST", `port ${od.port} is a ztunnel port (loop)`);
      if (factory === undefined) throw new ProxyError("POOL_CLOSED", "pod is being removed");
      // The app sees the original client as source: the upstream socket spoofs it (IP_TRANSPARENT).
      const spoofing: SocketFactory = {
        listenTcp: (o) => factory.listenTcp(o),
        connectTcp: (o) => factory.connectTcp({ ...o, sourceAddress: client.ip }),
      };
      result = await proxyPassthrough(s, spoofing, { ip, port: od.port });
    } catch (err) {
      s.resetAndDestroy();
      result = { ok: false, error: err instanceof ProxyError ? err : new ProxyError("UNKNOWN_DESTINATION", errorMessage(err)) };
    }
    const rec: AccessRecord = {
      direction: "inbound",
      "src.addr": formatHostPort(client.ip, client.port),
      "src.identity": undefined,
      "dst.addr": dst,
      "dst.workload": this.spec.name,
      "dst.namespace": this.spec.namespace,
      "dst.identity": formatIdentity(this.spec.identity),
      ...outcome(result, started),
    };
    // From the app's view: sent = toward the app.
    const sent = result.ok ? result.result.bytesAtoB : 0;
    const recv = result.ok ? result.result.bytesBtoA : 0;
    telemetry.closed("inbound", sent, recv, !result.ok || result.result.error !== undefined, rec);
  }

  /** The pod IP of the same family as an authority (the address the peer dialled on 15008). */
  private podIpLike(authority: string): string {
    const v6 = isV6Authority(authority);
    return this.spec.ips.find((ip) => ip.includes(":") === v6) ?? this.spec.ips[0] ?? "";
  }

  private onHboneRecord(rec: InboundRecord): void {
    const { telemetry } = this.deps;
    // HboneServer reports after the CONNECT ended; count open and close together.
    telemetry.opened("inbound");
    const r = rec.result;
    // Relay a = upstream (app), b = stream (peer): AtoB = app → peer.
    const access: AccessRecord = {
      direction: "inbound",
      "src.addr": rec.sourceAddr,
      "src.identity": formatIdentity(rec.source),
      "dst.addr": rec.destination,
      "dst.hbone_addr": formatHostPort(this.podIpLike(rec.destination), HBONE_PORT),
      "dst.workload": this.spec.name,
      "dst.namespace": this.spec.namespace,
      "dst.identity": formatIdentity(this.spec.identity),
      bytes_sent: r?.bytesBtoA ?? 0,
      bytes_recv: r?.bytesAtoB ?? 0,
      duration: r?.durationMs ?? 0,
      error: rec.error?.message ?? (rec.status !== 200 ? `status ${rec.status}` : r?.error?.message),
    };
    telemetry.closed("inbound", r?.bytesBtoA ?? 0, r?.bytesAtoB ?? 0, rec.status !== 200 || r?.error !== undefined, access);
  }
}

function isV6Authority(authority: string): boolean {
  return authority.startsWith("[");
}

function outcome(result: OutboundResult, started: number): AccessRecord {
  if (!result.ok) return { bytes_sent: 0, bytes_recv: 0, duration: Date.now() - started, error: result.error.message, response_flags: result.error.responseFlag };
  const r = result.result;
  return { bytes_sent: r.bytesAtoB, bytes_recv: r.bytesBtoA, duration: r.durationMs, error: r.error?.message };
}

/** The fd of an accepted socket (Node keeps it on the handle; needed for SO_ORIGINAL_DST). */
function fdOf(s: Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new Error("accepted socket has no fd");
  return fd;
}
