import { serviceKey, type Service, type StateData, type Workload } from "../state/types.js";
import { dashedIp, normalizeName } from "./names.js";

// The state as the DNS proxy looks things up: services by (lower-case) hostname and the
// healthy workloads behind each service. Built once per state version and reused for every
// query, so the health filter runs here rather than per answer.

export class DnsDirectory {
  private readonly byHost = new Map<string, Service[]>();
  private readonly members = new Map<string, Workload[]>();

  constructor(data: StateData) {
    for (const s of data.services) {
      const host = normalizeName(s.hostname);
      const list = this.byHost.get(host) ?? [];
      list.push(s);
      this.byHost.set(host, list);
    }
    for (const w of data.workloads) {
      // Kubernetes DNS lists ready endpoints only.
      if (w.status !== "Healthy") continue;
      for (const key of Object.keys(w.services)) {
        const list = this.members.get(key) ?? [];
        list.push(w);
        this.members.set(key, list);
      }
    }
  }

  servicesByHost(host: string): readonly Service[] {
    return this.byHost.get(host) ?? [];
  }

  /** Healthy workloads backing the service (Kubernetes DNS lists ready endpoints only). */
  endpoints(service: Service): readonly Workload[] {
    return this.members.get(serviceKey(service.namespace, service.hostname)) ?? [];
  }

  /** The endpoint of a headless service whose DNS label is `label` (its hostname, else its dashed IP). */
  endpointByLabel(service: Service, label: string): Workload | undefined {
    return this.endpoints(service).find((w) => endpointLabel(w) === label || w.workloadIps.some((ip) => dashedIp(ip) === label));
  }
}

/** The first label of an endpoint's DNS name: its hostname, else its first IP dashed. */
export function endpointLabel(w: Workload): string {
  return w.hostname ?? dashedIp(w.workloadIps[0] ?? "");
}

/** Caches the directory of the current state version. */
export class DnsDirectoryCache {
  private version = -1;
  private dir: DnsDirectory | undefined;

  constructor(private readonly source: { readonly version: number; readonly state: StateData }) {}

  get(): DnsDirectory {
    if (this.dir === undefined || this.version !== this.source.version) {
      this.dir = new DnsDirectory(this.source.state);
      this.version = this.source.version;
    }
    return this.dir;
  }
}
