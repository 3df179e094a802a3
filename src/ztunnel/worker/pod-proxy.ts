import { Socket, type Server } from "node:net";
import { dupFd, NetnsHandle } from "../../native/index.js";
import { errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/log.js";
import { InPodSocketFactory } from "../../sockets/index.js";
import type { SocketFactory } from "../../sockets/socket-factory.js";
import { HbonePool } from "../proxy/hbone-client.js";
import { HboneServer } from "../proxy/hbone-server.js";
import { isFdExhaustion, type Direction, type PodAdmission, type WorkerBudget } from "../proxy/budget.js";
import type { JsRelayWhy, PlaintextRelayChoice, RelayUsed } from "../proxy/plain-relay.js";
import { guardAcceptErrors, ThrottledLog } from "../proxy/limits.js";
import type { WorkloadStore } from "../state/store.js";
import type { WorkerCerts } from "./certs.js";
import type { PolicyAuthorizer } from "../authz/authorizer.js";
import { formatHostPort } from "../state/ip.js";
import { formatIdentity } from "../tls/identity.js";
import type { ConnectionMeter } from "../metrics/accumulator.js";
import { LabelMemo } from "../metrics/label-memo.js";
import type { OpenStream } from "../proxy/hbone-server.js";
import { handleInboundPlaintext, openHboneInbound, recordHboneInbound, type ConnectionContext, type TrackedConnection } from "./connections.js";
import { handleOutbound } from "./outbound.js";
import type { ListenerInfo, OpenConnection, PodSpec, WorkerSettings } from "./messages.js";
import { HBONE_PORT } from "./resolve.js";
import type { WorkerTelemetry } from "./telemetry.js";
import type { RunningPodDns, WorkerDns } from "../dns/worker-dns.js";
import type { HboneBalancer } from "./hbone-balance.js";

// One pod on one worker: this worker's own copy of the pod's netns fd, its three SO_REUSEPORT
// listeners inside the pod (15001 outbound, 15006 inbound plaintext, 15008 inbound HBONE), its
// HBONE client pool (sockets in the pod's netns, so never shared with another pod) and every
// connection it accepted. start() either brings all listeners up or leaves nothing behind.

export const OUTBOUND_PORT = 15001;
export const INBOUND_PLAINTEXT_PORT = 15006;
const CLOSE_WAIT_MS = 2_000;

export interface PodProxyDeps {
  readonly settings: WorkerSettings;
  readonly store: WorkloadStore;
  readonly certs: WorkerCerts;
  readonly telemetry: WorkerTelemetry;
  /** This worker's fd budget; the pod gets a share of it. */
  readonly budget: WorkerBudget;
  /** The worker's policy engine (follows the state's policies). */
  readonly authorizer: PolicyAuthorizer;
  readonly log: Logger;
  /** Reports fd numbers this worker opens/closes (the main thread cleans up after a crash). */
  readonly fdOpened: (fd: number) => void;
  readonly fdClosed: (fd: number) => void;
  /** The DNS proxy plug-in (15053); undefined when DNS proxying is off. */
  readonly dns?: WorkerDns;
  /** Spreads inbound HBONE connections over the workers; undefined: each stays where accepted. */
  readonly balance?: { readonly balancer: HboneBalancer; readonly handOff: (to: number, fd: number, uid: string) => void };
}

export class PodProxy {
  private netns: NetnsHandle | undefined;
  private factory: SocketFactory | undefined;
  private readonly servers: Server[] = [];
  private hbone: HboneServer | undefined;
  private dns: RunningPodDns | undefined;
  private pool: HbonePool | undefined;
  private readonly downstreams = new Set<Socket>();
  private retained = false;
  /** This pod's share of the worker's descriptors (every listener and upstream). */
  private readonly admission: PodAdmission;
  private readonly throttled: ThrottledLog;
  /** Kernel relay start failures, apart so they do not hide the budget's warnings. */
  private readonly relayLog: ThrottledLog;
  /** What the plaintext paths relay with, per direction (the budget they ask for pipes). */
  private readonly plaintext: Record<Direction, PlaintextRelayChoice>;
  private closed = false;
  /** Open connections of this pod on this worker (config_dump, policy re-checks). */
  private readonly open = new Set<TrackedConnection>();
  /** Meters of relaying HBONE streams, opened when the CONNECT was accepted. */
  private readonly hboneMeters = new WeakMap<OpenStream, ConnectionMeter>();
  readonly listeners: ListenerInfo[] = [];
  private ctx: ConnectionContext | undefined;
  private readonly labelMemo = new LabelMemo();

  constructor(
    readonly spec: PodSpec,
    private readonly deps: PodProxyDeps,
  ) {
    this.throttled = new ThrottledLog(deps.log);
    this.relayLog = new ThrottledLog(deps.log);
    this.admission = deps.budget.addPod(spec.uid, `${spec.namespace}/${spec.name}`);
    const choice = (direction: Direction): PlaintextRelayChoice => ({
      kind: deps.settings.plaintextRelay,
      extraFds: (n) => (this.closed ? undefined : this.admission.extraFds(direction, n)),
      pipes: () => (this.closed ? undefined : this.admission.pipes()),
      used: (relay, why) => this.relayUsed(relay, why),
    });
    this.plaintext = { outbound: choice("outbound"), inbound: choice("inbound") };
  }

  async start(): Promise<readonly ListenerInfo[]> {
    const { settings, certs } = this.deps;
    try {
      const fd = dupFd(this.spec.netnsFd);
      this.deps.fdOpened(fd);
      this.netns = NetnsHandle.fromFd(fd);
      const factory = watchFdExhaustion(new InPodSocketFactory(this.netns, { mark: settings.packetMark, reusePort: settings.reusePort }), this.admission);
      this.factory = factory;
      certs.retain(this.spec.cert);
      this.retained = true;
      this.pool = new HbonePool({ certs, maxStreamsPerConnection: settings.poolMaxStreams, idleTimeoutMs: settings.poolIdleMs, log: this.deps.log });
      const address = settings.ipv6 ? "::" : "0.0.0.0";
      // Paused until the route's upstream is up (HBONE 200, passthrough connect): the client's
      // first bytes wait in the kernel, so they neither wake this worker nor keep the kernel
      // relay from taking the socket over.
      const outbound = await factory.listenTcp({ address, port: OUTBOUND_PORT, pauseOnConnect: true });
      this.adopt(outbound, "outbound", (s) => void handleOutbound(s, this.context()));
      const inbound = await factory.listenTcp({ address, port: INBOUND_PLAINTEXT_PORT, transparent: true });
      this.adopt(inbound, "inbound-plaintext", (s) => void handleInboundPlaintext(s, this.context()));
      this.hbone = new HboneServer({
        identity: this.spec.identity,
        certs,
        podIps: this.spec.ips,
        socketFactory: factory,
        listen: { address, port: HBONE_PORT },
        admission: this.admission,
        authorizer: this.deps.authorizer,
        onRecord: (rec) => recordHboneInbound(rec, this.context(), rec.stream === undefined ? undefined : this.hboneMeters.get(rec.stream)),
        onOpen: (o) => {
          this.hboneMeters.set(o, openHboneInbound(o, this.context()));
          return this.track({
            direction: "inbound",
            listener: "inbound-hbone",
            src: formatHostPort(o.sourceIp, o.sourcePort),
            dst: o.authority,
            started: Date.now(),
            sourceIdentity: o.source,
            authz: { sourceIp: o.sourceIp, destinationIp: o.destination.ip, destinationPort: o.destination.port },
            close: (reason) => o.abort(reason),
          });
        },
        log: this.deps.log,
        ...(this.deps.balance !== undefined ? { place: this.placer(this.deps.balance) } : {}),
      });
      await this.hbone.start();
      this.listeners.push(this.info(address, HBONE_PORT, "inbound-hbone"));
      if (this.deps.dns !== undefined) {
        const spec = this.spec;
        this.dns = await this.deps.dns.startPod({ uid: spec.uid, name: spec.name, namespace: spec.namespace, netns: this.netns, factory });
        for (const l of this.dns.listeners) this.listeners.push(this.info(l.address, l.port, l.protocol === "UDP" ? "dns-udp" : "dns-tcp"));
      }
      if (this.closed) throw new Error("pod removed while its listeners were starting");
      return this.listeners;
    } catch (err) {
      await this.close();
      throw new Error(`listeners of pod ${this.spec.namespace}/${this.spec.name} on worker ${settings.index}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /**
   * An inbound HBONE connection of this pod that another worker accepted and handed here (its
   * fd, a dup that worker no longer uses). False when this pod cannot take it (closing, not
   * started, or the fd is not a socket): the caller closes the fd.
   */
  adoptHbone(fd: number, placed: () => () => void): boolean {
    const hbone = this.hbone;
    if (this.closed || hbone === undefined) return false;
    let sock: Socket;
    try {
      sock = new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
    } catch {
      return false;
    }
    hbone.adopt(sock, placed());
    return true;
  }

  private placer(balance: NonNullable<PodProxyDeps["balance"]>): (sock: Socket) => (() => void) | undefined {
    const uid = this.spec.uid;
    const handOff = (to: number, fd: number): void => balance.handOff(to, fd, uid);
    return (sock) => balance.balancer.place(sock, handOff);
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
    if (this.dns !== undefined) closing.push(this.dns.close());
    this.dns = undefined;
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
    this.dns?.stopAccepting();
    // The outbound pool stays usable: connections accepted before the listeners closed still
    // need their tunnels (a refused stream is retried on a new connection). close() ends it.
  }

  /**
   * The state changed (policies, or the workloads they apply to): every open inbound
   * connection is judged again by the engine's own re-check, with its original peer identity
   * and addresses against this pod's current workload; the ones now denied are closed.
   * Returns how many were closed.
   */
  recheck(): number {
    const self = this.deps.store.podWorkload(this.spec.uid, this.spec.namespace, this.spec.name);
    // Only inbound connections carry what their first check saw; outbound ones are not re-judged.
    const inbound = [...this.open].filter((c): c is Rechecked => c.authz !== undefined);
    const denied = this.deps.authorizer.recheck(inbound, (c) => ({ sourceIdentity: c.sourceIdentity, ...c.authz, ...(self !== undefined ? { destination: self } : {}) }));
    for (const { connection: c, decision: d } of denied) {
      this.open.delete(c);
      this.deps.log.info({ pod: `${this.spec.namespace}/${this.spec.name}`, src: c.src, dst: c.dst, policy: d.policy, reason: d.reason }, "open connection denied by the new policies; closing it");
      c.close(`denied after a policy change: ${d.reason}`);
    }
    return denied.length;
  }

  /** Open connections as config_dump shows them. */
  connections(): OpenConnection[] {
    const now = Date.now();
    return [...this.open].map((c) => ({
      direction: c.direction,
      listener: c.listener,
      src: c.src,
      dst: c.dst,
      srcIdentity: c.sourceIdentity === undefined ? undefined : formatIdentity(c.sourceIdentity),
      worker: this.deps.settings.index,
      ageMs: now - c.started,
    }));
  }

  private track(c: TrackedConnection): () => void {
    this.open.add(c);
    return () => this.open.delete(c);
  }

  /** Connections still open (outbound and plaintext inbound accepted here, HBONE streams). */
  get activeConnections(): number {
    return this.downstreams.size + (this.hbone?.stats.streams ?? 0);
  }

  private closeNetns(): void {
    this.admission.leave();
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
    guardAcceptErrors(server, this.throttled, `${role} ${this.spec.namespace}/${this.spec.name}`, (code) => this.admission.exhausted(code, `${role} accept`));
    server.on("connection", (s: Socket) => {
      this.deps.telemetry.accepted();
      // Admitted at what it holds relayed in JS (2 fds); the kernel relay asks for its pipes later.
      const release = this.closed ? undefined : this.admission.connection(role === "outbound" ? "outbound" : "inbound");
      if (release === undefined) {
        s.resetAndDestroy();
        return;
      }
      // No setNoDelay here: the listener has TCP_NODELAY and accepted sockets inherit it.
      this.downstreams.add(s);
      s.on("close", () => {
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

  /** What a connection handler needs; built once (every field is fixed once start() set them). */
  private context(): ConnectionContext {
    if (this.ctx !== undefined && this.ctx.pool === this.pool && this.ctx.factory === this.factory) return this.ctx;
    this.ctx = {
      spec: this.spec,
      clusterId: this.deps.settings.clusterId,
      store: this.deps.store,
      telemetry: this.deps.telemetry,
      authorizer: this.deps.authorizer,
      track: (c) => this.track(c),
      pool: this.pool,
      factory: this.factory,
      plaintextRelay: (direction) => this.plaintext[direction],
      labels: this.labelMemo,
    };
    return this.ctx;
  }

  /** Counted; a kernel relay that could not start is warned (EMFILE also starts the shedding). */
  private relayUsed(relay: RelayUsed, why: JsRelayWhy | undefined): void {
    this.deps.telemetry.relayed(relay, why?.reason);
    if (why?.reason === "fd_exhausted") this.admission.exhausted(why.code ?? "EMFILE", "kernel relay pipes");
    else if (why?.reason === "splice_failed") {
      const pod = `${this.spec.namespace}/${this.spec.name}`;
      this.relayLog.warn({ pod, code: why.code, err: why.error?.message }, "kernel relay could not start; relaying the connection in JS");
    }
  }

  private info(address: string, port: number, role: ListenerInfo["role"]): ListenerInfo {
    const { settings } = this.deps;
    const protocol = role === "inbound-hbone" ? "HBONE" : role === "dns-udp" ? "UDP" : "TCP";
    return { address, port, protocol, role, worker: settings.index, mark: settings.packetMark };
  }
}

/** An open connection with the inputs of its first authorization check (inbound ones). */
type Rechecked = TrackedConnection & { readonly authz: NonNullable<TrackedConnection["authz"]> };

/** Reports EMFILE/ENFILE on every socket the pod's proxies open (upstreams, HBONE, passthrough). */
function watchFdExhaustion(inner: SocketFactory, admission: PodAdmission): SocketFactory {
  const report = (err: unknown): void => {
    const code = (err as NodeJS.ErrnoException).code;
    if (isFdExhaustion(code)) admission.exhausted(code ?? "", "connect");
  };
  return {
    listenTcp: (o) => inner.listenTcp(o),
    connectTcp: (o) => {
      try {
        const s = inner.connectTcp(o);
        s.on("error", report); // a socket emits 'error' at most once
        return s;
      } catch (err) {
        report(err);
        throw err;
      }
    },
  };
}
