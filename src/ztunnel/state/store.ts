import type { Logger } from "../../shared/log.js";
import { canonicalIp } from "./ip.js";
import { withRoutingChecks } from "./routing.js";
import { EMPTY_STATE, serviceKey, type ConfigNotice, type Service, type StateData, type StateSnapshot, type Workload } from "./types.js";

// The workload/service/policy state with the indexes the proxy looks things up by. The main
// thread feeds it from a StateSource and posts snapshots to workers; a worker keeps its own
// store and applies those snapshots (older versions are ignored).

/** Receives complete state from a source (file now; Kubernetes or xDS later). */
export interface StateSink {
  replace(data: StateData, origin: string): void;
}

export interface Endpoint {
  readonly workload: Workload;
  readonly ip: string;
  readonly port: number;
}

export interface ServiceTarget {
  readonly service: Service;
  readonly endpoints: readonly Endpoint[];
}

export type ChangeListener = (version: number) => void;

interface Indexes {
  readonly byIp: Map<string, Workload>;
  readonly byUid: Map<string, Workload>;
  /** "namespace/name" → workload (istiod keys pods by `<cluster>//Pod/<ns>/<name>`, ZDS by the pod UID). */
  readonly byName: Map<string, Workload>;
  readonly byVip: Map<string, Service>;
  /** serviceKey → workloads that back it. */
  readonly members: Map<string, Workload[]>;
  /** IP (any network) → why a fail-closed workload there must not be reached directly. */
  readonly failClosedIps: Map<string, string>;
}

export class WorkloadStore implements StateSink {
  private data: StateData = EMPTY_STATE;
  private idx: Indexes = buildIndexes(this.data);
  private ver = 0;
  private origin = "";
  private readonly listeners = new Set<ChangeListener>();
  private warned = new Set<string>();

  /** `log` (main thread): each new notice is warned about once. */
  constructor(
    private readonly random: () => number = Math.random,
    private readonly log?: Logger,
  ) {}

  get version(): number {
    return this.ver;
  }

  /** Where the current state came from (a file name, "snapshot", …). */
  get source(): string {
    return this.origin;
  }

  get state(): StateData {
    return this.data;
  }

  /**
   * A new state from a source, already validated by it (each source validates where its input
   * enters). Workloads and services whose routing we cannot honour are marked fail-closed here,
   * once for every source (routing.ts).
   */
  replace(data: StateData, origin: string): void {
    const checked = withRoutingChecks(data);
    this.warnOnce(checked.notices);
    this.install(checked, this.ver + 1, origin);
  }

  /** Worker side: adopts a snapshot unless it is older than what we already have. */
  applySnapshot(snap: StateSnapshot): boolean {
    if (snap.version <= this.ver) return false;
    this.install({ workloads: snap.workloads, services: snap.services, policies: snap.policies, notices: snap.notices }, snap.version, "snapshot");
    return true;
  }

  /** A structured-clone-safe copy of the current state, for postMessage. */
  snapshot(): StateSnapshot {
    return { version: this.ver, workloads: this.data.workloads, services: this.data.services, policies: this.data.policies, notices: this.data.notices };
  }

  /** Logs each notice the first time it appears (a notice that goes and comes back is logged again). */
  private warnOnce(notices: readonly ConfigNotice[]): void {
    const now = new Set<string>();
    for (const n of notices) {
      const key = `${n.object}\u0000${n.field}\u0000${n.effect}\u0000${n.reason}`;
      now.add(key);
      if (!this.warned.has(key)) this.log?.warn({ object: n.object, field: n.field, effect: n.effect, reason: n.reason }, "configuration not applied as given");
    }
    this.warned = now;
  }

  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  workloadByUid(uid: string): Workload | undefined {
    return this.idx.byUid.get(uid);
  }

  /**
   * A pod's own workload: by its ZDS uid, else by namespace/name (the uid istiod gives a pod,
   * `<cluster>//Pod/<ns>/<name>`, is not the Kubernetes UID ZDS carries).
   */
  podWorkload(uid: string, namespace: string, name: string): Workload | undefined {
    return this.idx.byUid.get(uid) ?? this.idx.byName.get(`${namespace}/${name}`);
  }

  workloadByIp(ip: string, network = ""): Workload | undefined {
    const c = canonicalIp(ip);
    return c === undefined ? undefined : this.idx.byIp.get(`${network}/${c}`);
  }

  /**
   * Why a fail-closed workload on any network holds this IP (e.g. one behind a network gateway
   * on another network): a direct connection there would bypass what it must go through.
   */
  failClosedAt(ip: string): string | undefined {
    const c = canonicalIp(ip);
    return c === undefined ? undefined : this.idx.failClosedIps.get(c);
  }

  serviceByVip(ip: string, network = ""): Service | undefined {
    const c = canonicalIp(ip);
    return c === undefined ? undefined : this.idx.byVip.get(`${network}/${c}`);
  }

  /** The service at vip:port and its endpoints (healthy or not) with their target ports. */
  serviceTarget(vip: string, port: number, network = ""): ServiceTarget | undefined {
    const service = this.serviceByVip(vip, network);
    if (service === undefined || service.ports[String(port)] === undefined) return undefined;
    const key = serviceKey(service.namespace, service.hostname);
    const endpoints: Endpoint[] = [];
    for (const w of this.idx.members.get(key) ?? []) {
      const target = targetPort(service, w, key, port);
      const ip = w.workloadIps[0];
      if (ip !== undefined && target !== undefined) endpoints.push({ workload: w, ip, port: target });
    }
    return { service, endpoints };
  }

  /** A random healthy endpoint of the service at vip:port. */
  pickEndpoint(vip: string, port: number, network = ""): { service: Service; endpoint: Endpoint } | undefined {
    const target = this.serviceTarget(vip, port, network);
    if (target === undefined) return undefined;
    const healthy = target.endpoints.filter((e) => e.workload.status === "Healthy");
    if (healthy.length === 0) return undefined;
    const endpoint = healthy[Math.floor(this.random() * healthy.length)] ?? healthy[0];
    return endpoint === undefined ? undefined : { service: target.service, endpoint };
  }

  private install(data: StateData, version: number, origin: string): void {
    this.idx = buildIndexes(data);
    this.data = data;
    this.ver = version;
    this.origin = origin;
    for (const l of this.listeners) l(version);
  }
}

// Workload's own per-service port wins (ztunnel's LocalWorkload.services), then the service's
// targetPort, where 0 means "same as the service port".
function targetPort(service: Service, w: Workload, key: string, port: number): number | undefined {
  const own = w.services[key]?.[String(port)];
  if (own !== undefined && own !== 0) return own;
  const svc = service.ports[String(port)];
  if (svc === undefined) return undefined;
  return svc === 0 ? port : svc;
}

function buildIndexes(data: StateData): Indexes {
  const byIp = new Map<string, Workload>();
  const byUid = new Map<string, Workload>();
  const byName = new Map<string, Workload>();
  const byVip = new Map<string, Service>();
  const members = new Map<string, Workload[]>();
  const failClosedIps = new Map<string, string>();
  for (const w of data.workloads) {
    byUid.set(w.uid, w);
    if (w.name !== "") byName.set(`${w.namespace}/${w.name}`, w);
    if (w.failClosed !== undefined) for (const ip of w.workloadIps) failClosedIps.set(ip, w.failClosed);
    for (const ip of w.workloadIps) byIp.set(`${w.network}/${ip}`, w);
    for (const key of Object.keys(w.services)) {
      const list = members.get(key) ?? [];
      list.push(w);
      members.set(key, list);
    }
  }
  for (const s of data.services) for (const v of s.vips) byVip.set(`${v.network}/${v.address}`, s);
  return { byIp, byUid, byName, byVip, members, failClosedIps };
}
