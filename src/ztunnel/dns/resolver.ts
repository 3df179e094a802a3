import { isIP } from "node:net";
import type { Answer, Question, SrvAnswer } from "dns-packet";
import { serviceKey, type Service, type Workload } from "../state/types.js";
import { endpointLabel, type DnsDirectory } from "./directory.js";
import { aliases, labels, normalizeName, wildcards, type Alias } from "./names.js";

// Answers from the workload state (DESIGN §15), following ztunnel's matching: the requested
// name's aliases from the client pod's point of view, each tried as itself and as wildcards;
// services with VIPs or Kubernetes headless services answer; a pod host of a headless service
// answers with the pod's IPs. SRV records for named service ports go beyond ztunnel (which
// forwards them). Anything not ours is forwarded upstream.

export const DNS_TTL_SECONDS = 30;

export interface DnsClient {
  readonly namespace: string;
  /** Network of the client pod: only VIPs on it are answered. */
  readonly network: string;
}

export interface ResolverOptions {
  /** Kubernetes cluster domain (CLUSTER_DOMAIN), e.g. "cluster.local". */
  readonly clusterDomain: string;
  /** false: AAAA for mesh names is answered empty (IPv6 off on this node). */
  readonly ipv6: boolean;
  /** Order of addresses in an answer (tests pass the identity). */
  readonly shuffle?: <T>(items: T[]) => T[];
}

export type Resolution =
  /** We are authoritative: these records (possibly none: the name exists, not this type). */
  | { readonly kind: "answer"; readonly rcode: "NOERROR" | "NXDOMAIN"; readonly answers: Answer[]; readonly additionals: Answer[] }
  | { readonly kind: "forward" };

type Server = { readonly kind: "service"; readonly service: Service } | { readonly kind: "pod"; readonly service: Service; readonly workload: Workload };

interface Match {
  readonly server: Server;
  /** The name that matched (a service hostname, a wildcard, or a pod FQDN). */
  readonly name: string;
  readonly alias: Alias;
}

const FORWARD: Resolution = { kind: "forward" };

function shuffled<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

export class DnsResolver {
  private readonly svcDomainSuffix: string;
  private readonly shuffle: <T>(items: T[]) => T[];

  constructor(private readonly opts: ResolverOptions) {
    this.svcDomainSuffix = `.svc.${normalizeName(opts.clusterDomain)}`;
    this.shuffle = opts.shuffle ?? shuffled;
  }

  resolve(dir: DnsDirectory, q: Question, client: DnsClient): Resolution {
    if ((q.class ?? "IN") !== "IN") return FORWARD;
    switch (q.type) {
      case "A":
      case "AAAA":
        return this.address(dir, q.name, q.type, client);
      case "SRV":
        return this.srv(dir, q.name, client);
      default:
        return FORWARD;
    }
  }

  private address(dir: DnsDirectory, qname: string, type: "A" | "AAAA", client: DnsClient): Resolution {
    const m = this.find(dir, normalizeName(qname), client);
    if (m === undefined) return FORWARD;
    const answers: Answer[] = [];
    let owner = qname;
    // Found through a stripped search domain: point the asked name at the canonical one, so
    // the client caches and reports the real service (ztunnel answers a CNAME here as well).
    if (m.alias.stripped !== undefined && !m.name.startsWith("*.")) {
      answers.push({ type: "CNAME", name: qname, ttl: DNS_TTL_SECONDS, class: "IN", data: m.name });
      owner = m.name;
    }
    for (const ip of this.addresses(dir, m.server, type, client)) answers.push({ type, name: owner, ttl: DNS_TTL_SECONDS, class: "IN", data: ip });
    return { kind: "answer", rcode: "NOERROR", answers, additionals: [] };
  }

  /** `_<port name>._<proto>.<service>`: one record per ready endpoint (headless) or the service itself. */
  private srv(dir: DnsDirectory, qname: string, client: DnsClient): Resolution {
    const parts = labels(normalizeName(qname));
    const [portLabel, protoLabel] = parts;
    if (parts.length < 3 || portLabel === undefined || protoLabel === undefined || !portLabel.startsWith("_") || !protoLabel.startsWith("_")) return FORWARD;
    const m = this.find(dir, parts.slice(2).join("."), client);
    if (m === undefined || m.server.kind !== "service" || m.name.startsWith("*.")) return FORWARD;
    const service = m.server.service;
    const host = normalizeName(service.hostname);
    const portName = portLabel.slice(1);
    const port = Object.entries(service.portNames ?? {}).find(([, n]) => n === portName)?.[0];
    // Every mesh port is TCP; an unknown port name or protocol does not exist (Kubernetes DNS: NXDOMAIN).
    if (port === undefined || protoLabel !== "_tcp") return { kind: "answer", rcode: "NXDOMAIN", answers: [], additionals: [] };
    const answers: SrvAnswer[] = [];
    const additionals: Answer[] = [];
    if (service.vips.length > 0) {
      answers.push({ type: "SRV", name: qname, ttl: DNS_TTL_SECONDS, class: "IN", data: { priority: 0, weight: 100, port: Number(port), target: host } });
      for (const t of ["A", "AAAA"] as const) for (const ip of this.addresses(dir, m.server, t, client)) additionals.push({ type: t, name: host, ttl: DNS_TTL_SECONDS, class: "IN", data: ip });
      return { kind: "answer", rcode: "NOERROR", answers, additionals };
    }
    const endpoints = dir.endpoints(service);
    const weight = endpoints.length === 0 ? 0 : Math.max(1, Math.floor(100 / endpoints.length));
    const key = serviceKey(service.namespace, service.hostname);
    for (const w of endpoints) {
      const target = `${endpointLabel(w)}.${host}`;
      const own = w.services[key]?.[port];
      const svcTarget = service.ports[port] ?? 0;
      const targetPort = own !== undefined && own !== 0 ? own : svcTarget === 0 ? Number(port) : svcTarget;
      answers.push({ type: "SRV", name: qname, ttl: DNS_TTL_SECONDS, class: "IN", data: { priority: 0, weight, port: targetPort, target } });
      for (const t of ["A", "AAAA"] as const) {
        for (const ip of this.addresses(dir, { kind: "pod", service, workload: w }, t, client)) additionals.push({ type: t, name: target, ttl: DNS_TTL_SECONDS, class: "IN", data: ip });
      }
    }
    return { kind: "answer", rcode: "NOERROR", answers, additionals };
  }

  private find(dir: DnsDirectory, name: string, client: DnsClient): Match | undefined {
    for (const alias of aliases(name, client.namespace, normalizeName(this.opts.clusterDomain))) {
      for (const candidate of wildcards(alias.name)) {
        const service = this.bestService(dir.servicesByHost(candidate), client);
        if (service !== undefined) return { server: { kind: "service", service }, name: candidate, alias };
      }
      if (alias.podHost) {
        const [label, ...rest] = labels(alias.name);
        if (label === undefined || rest.length === 0) continue;
        const host = rest.join(".");
        const headless = dir.servicesByHost(host).filter((s) => this.isHeadless(s));
        const found = this.bestPod(dir, headless, label, client);
        if (found !== undefined) return { server: found, name: alias.name, alias };
      }
    }
    return undefined;
  }

  private isHeadless(s: Service): boolean {
    return s.vips.length === 0 && normalizeName(s.hostname).endsWith(this.svcDomainSuffix);
  }

  /** Services with VIPs or headless ones; the client's own namespace first. */
  private bestService(candidates: readonly Service[], client: DnsClient): Service | undefined {
    const usable = candidates.filter((s) => s.vips.length > 0 || this.isHeadless(s));
    return usable.find((s) => s.namespace === client.namespace) ?? usable[0];
  }

  private bestPod(dir: DnsDirectory, services: readonly Service[], label: string, client: DnsClient): Server | undefined {
    const ordered = [...services.filter((s) => s.namespace === client.namespace), ...services.filter((s) => s.namespace !== client.namespace)];
    for (const service of ordered) {
      const workload = dir.endpointByLabel(service, label);
      if (workload !== undefined) return { kind: "pod", service, workload };
    }
    return undefined;
  }

  private addresses(dir: DnsDirectory, server: Server, type: "A" | "AAAA", client: DnsClient): string[] {
    const family = type === "A" ? 4 : 6;
    if (family === 6 && !this.opts.ipv6) return [];
    const fam = server.service.ipFamilies;
    if ((fam === "IPv4" && family === 6) || (fam === "IPv6" && family === 4)) return [];
    if (server.kind === "pod") return server.workload.workloadIps.filter((ip) => isIP(ip) === family);
    const { service } = server;
    if (service.vips.length > 0) {
      return this.shuffle(service.vips.filter((v) => v.network === client.network && isIP(v.address) === family).map((v) => v.address));
    }
    // Headless: one address of the family per ready endpoint.
    const out: string[] = [];
    for (const w of dir.endpoints(service)) {
      const ip = w.workloadIps.find((a) => isIP(a) === family);
      if (ip !== undefined) out.push(ip);
    }
    return this.shuffle(out);
  }
}
