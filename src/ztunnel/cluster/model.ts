import type { V1EndpointSlice, V1Namespace, V1Pod, V1Service, V1ServicePort } from "@kubernetes/client-node";
import { canonicalIp } from "../state/ip.js";
import type { KubeAuthorizationPolicy } from "./authz-translate.js";
import type { KubePeerAuthentication } from "./peer-authn.js";
import { buildPolicies } from "./policies.js";
import { nodeLocalOnly, serviceNotices } from "./service-notices.js";
import { waypointOf } from "./waypoints.js";
import { serviceKey, type ConfigNotice, type Service, type StateData, type Workload } from "../state/types.js";

// Kubernetes objects → the same workload/service model the local config file gives (pure, so
// the cluster source and its tests share one definition). Objects may come from a list
// (decoded) or from watch events (raw JSON): only fields spelled the same in both are read.

export const REDIRECTION_ANNOTATION = "ambient.istio.io/redirection";
/** Istio's network label, on a pod or (as a default for its pods) on a namespace. */
export const NETWORK_LABEL = "topology.istio.io/network";
export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

export interface ClusterObjects {
  readonly pods: readonly V1Pod[];
  readonly services: readonly V1Service[];
  readonly endpointSlices: readonly V1EndpointSlice[];
  readonly namespaces: readonly V1Namespace[];
  /** security.istio.io/v1 (absent: none). */
  readonly authorizationPolicies?: readonly KubeAuthorizationPolicy[];
  readonly peerAuthentications?: readonly KubePeerAuthentication[];
}

export interface ModelOptions {
  readonly trustDomain: string;
  /** Service hostnames are `<name>.<namespace>.svc.<clusterDomain>`. */
  readonly clusterDomain: string;
  /** The cluster's network: VIPs and pods without a network label are on it. */
  readonly network: string;
  /** Istio's root namespace (mesh-wide policies); default istio-system. */
  readonly rootNamespace?: string;
}

export interface BuildResult {
  readonly data: StateData;
  /** Pods left out because another pod holds the same IP (namespace/name). */
  readonly conflicts: readonly string[];
}

/** A pod whose containers will not run again (its netns is gone or going). */
export function isTerminal(pod: V1Pod): boolean {
  const phase = pod.status?.phase;
  return phase === "Succeeded" || phase === "Failed";
}

export function podIps(pod: V1Pod): string[] {
  const raw = (pod.status?.podIPs ?? []).map((x) => x.ip);
  if (raw.length === 0 && pod.status?.podIP !== undefined) raw.push(pod.status.podIP);
  const out: string[] = [];
  for (const r of raw) {
    const ip = typeof r === "string" ? canonicalIp(r) : undefined;
    if (ip !== undefined && !out.includes(ip)) out.push(ip);
  }
  return out;
}

export function podServiceAccount(pod: V1Pod): string {
  const sa = pod.spec?.serviceAccountName;
  return sa === undefined || sa === "" ? "default" : sa;
}

function key(namespace: string | undefined, name: string | undefined): string {
  return `${namespace ?? ""}/${name ?? ""}`;
}

function time(t: Date | string | undefined): number {
  if (t === undefined) return 0;
  const ms = new Date(t).getTime();
  return Number.isNaN(ms) ? 0 : ms;
}

function tcpPorts(svc: V1Service): V1ServicePort[] {
  return (svc.spec?.ports ?? []).filter((p) => (p.protocol ?? "TCP") === "TCP" && Number.isInteger(p.port) && p.port > 0);
}

/** servicePort → targetPort; a named targetPort is 0 here (each pod's own port says where). */
function servicePortMap(svc: V1Service): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of tcpPorts(svc)) {
    const t = p.targetPort;
    out[String(p.port)] = typeof t === "number" ? t : t === undefined ? p.port : /^\d+$/.test(t) ? Number(t) : 0;
  }
  return out;
}

/** servicePort → port name (the DNS proxy's SRV records); undefined when no port is named. */
function portNames(svc: V1Service): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const p of tcpPorts(svc)) if (p.name !== undefined && p.name !== "") out[String(p.port)] = p.name;
  return Object.keys(out).length === 0 ? undefined : out;
}

/** A single-stack service answers only its family's DNS records. */
function singleFamily(svc: V1Service): "IPv4" | "IPv6" | undefined {
  const f = svc.spec?.ipFamilies ?? [];
  return f.length === 1 && (f[0] === "IPv4" || f[0] === "IPv6") ? f[0] : undefined;
}

function containerPort(pod: V1Pod, name: string): number | undefined {
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) if (p.name === name && (p.protocol ?? "TCP") === "TCP") return p.containerPort;
  }
  return undefined;
}

export function buildState(objs: ClusterObjects, opts: ModelOptions): BuildResult {
  const nsNetwork = new Map<string, string>();
  const nsLabels = new Map<string, Readonly<Record<string, string>>>();
  for (const ns of objs.namespaces) {
    if (ns.metadata?.name !== undefined) nsLabels.set(ns.metadata.name, ns.metadata.labels ?? {});
    const net = ns.metadata?.labels?.[NETWORK_LABEL];
    if (ns.metadata?.name !== undefined && net !== undefined) nsNetwork.set(ns.metadata.name, net);
  }

  // Services (ExternalName ones have no VIP and no endpoints ztunnel could use).
  const services = new Map<string, { svc: V1Service; model: Service }>();
  const notices: ConfigNotice[] = [];
  for (const svc of objs.services) notices.push(...serviceNotices(svc));
  for (const svc of objs.services) {
    const name = svc.metadata?.name;
    const namespace = svc.metadata?.namespace;
    if (name === undefined || namespace === undefined || svc.spec?.type === "ExternalName") continue;
    const rawVips = svc.spec?.clusterIPs ?? (svc.spec?.clusterIP !== undefined ? [svc.spec.clusterIP] : []);
    const vips = rawVips
      .map((v) => canonicalIp(v))
      .filter((v): v is string => v !== undefined)
      .map((address) => ({ network: opts.network, address }));
    services.set(key(namespace, name), {
      svc,
      model: {
        name,
        namespace,
        hostname: `${name}.${namespace}.svc.${opts.clusterDomain}`,
        vips,
        ports: servicePortMap(svc),
        subjectAltNames: [],
        ...optional("portNames", portNames(svc)),
        ...optional("ipFamilies", singleFamily(svc)),
        ...optional("waypoint", waypointOf(svc.metadata?.labels, nsLabels.get(namespace), namespace, opts.clusterDomain)),
        ...optional("loadBalancerMode", nodeLocalOnly(svc) ? "NodeLocal" : undefined),
      },
    });
  }

  // Workloads: every pod that is not terminal and not host network (host-network pods share
  // the node's IP, which is no workload's own). A pod without an IP yet is kept (found by uid,
  // no address): its node's CNI ADD, and so its ZDS Add, happens before the kubelet reports
  // the IP, and ztunnel must know the pod by then.
  const pods = new Map<string, V1Pod>();
  for (const pod of objs.pods) {
    if (pod.metadata?.uid === undefined || pod.metadata.name === undefined) continue;
    if (isTerminal(pod) || pod.spec?.hostNetwork === true) continue;
    pods.set(key(pod.metadata.namespace, pod.metadata.name), pod);
  }

  // Membership and endpoint readiness from EndpointSlices.
  const membership = new Map<string, Record<string, Record<string, number>>>();
  const notReady = new Set<string>();
  for (const slice of objs.endpointSlices) {
    const svcName = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    const sliceNs = slice.metadata?.namespace;
    if (svcName === undefined || sliceNs === undefined || slice.addressType === "FQDN") continue;
    const entry = services.get(key(sliceNs, svcName));
    if (entry === undefined) continue;
    const sKey = serviceKey(entry.model.namespace, entry.model.hostname);
    for (const ep of slice.endpoints ?? []) {
      const ref = ep.targetRef;
      if (ref === undefined || (ref.kind !== undefined && ref.kind !== "Pod")) continue;
      const pKey = key(ref.namespace ?? sliceNs, ref.name);
      const pod = pods.get(pKey);
      if (pod === undefined || (ref.uid !== undefined && ref.uid !== pod.metadata?.uid)) continue;
      if (ep.conditions?.ready === false) notReady.add(pKey);
      const ports: Record<string, number> = {};
      for (const sp of tcpPorts(entry.svc)) {
        const slicePort = (slice.ports ?? []).find((p) => (p.name ?? "") === (sp.name ?? "") && (p.protocol ?? "TCP") === "TCP");
        const t = sp.targetPort;
        const target =
          slicePort?.port ??
          (typeof t === "number" ? t : t === undefined ? sp.port : /^\d+$/.test(t) ? Number(t) : containerPort(pod, t));
        if (target !== undefined && target > 0) ports[String(sp.port)] = target;
      }
      if (Object.keys(ports).length === 0) continue;
      const mine = membership.get(pKey) ?? {};
      mine[sKey] = { ...(mine[sKey] ?? {}), ...ports };
      membership.set(pKey, mine);
    }
  }

  // One workload per IP: on a clash (an IP reused before the old pod's deletion was seen) the
  // running, newest pod wins.
  const ordered = [...pods.entries()].sort(([, a], [, b]) => {
    const ra = a.status?.phase === "Running" ? 1 : 0;
    const rb = b.status?.phase === "Running" ? 1 : 0;
    if (ra !== rb) return rb - ra;
    const ta = time(a.metadata?.creationTimestamp);
    const tb = time(b.metadata?.creationTimestamp);
    if (ta !== tb) return tb - ta;
    return (a.metadata?.uid ?? "") < (b.metadata?.uid ?? "") ? -1 : 1;
  });
  const taken = new Set<string>();
  const conflicts: string[] = [];
  const workloads: Workload[] = [];
  for (const [pKey, pod] of ordered) {
    const meta = pod.metadata ?? {};
    const namespace = meta.namespace ?? "default";
    const network = meta.labels?.[NETWORK_LABEL] ?? nsNetwork.get(namespace) ?? opts.network;
    const ips = podIps(pod);
    if (ips.some((ip) => taken.has(`${network}/${ip}`))) {
      conflicts.push(pKey);
      continue;
    }
    for (const ip of ips) taken.add(`${network}/${ip}`);
    const readyCondition = (pod.status?.conditions ?? []).find((c) => c.type === "Ready");
    workloads.push({
      uid: meta.uid ?? "",
      name: meta.name ?? "",
      namespace,
      serviceAccount: podServiceAccount(pod),
      trustDomain: opts.trustDomain,
      workloadIps: ips,
      protocol: meta.annotations?.[REDIRECTION_ANNOTATION] === "enabled" ? "HBONE" : "TCP",
      node: pod.spec?.nodeName === undefined || pod.spec.nodeName === "" ? undefined : pod.spec.nodeName,
      network,
      status: readyCondition?.status === "False" || notReady.has(pKey) ? "Unhealthy" : "Healthy",
      services: membership.get(pKey) ?? {},
      labels: { ...(meta.labels ?? {}) },
      // Kubernetes DNS names a pod `<hostname>.<subdomain>...` only when both are set.
      ...optional("hostname", pod.spec?.subdomain !== undefined && pod.spec.subdomain !== "" && pod.spec.hostname !== "" ? pod.spec?.hostname : undefined),
      ...optional("waypoint", waypointOf(meta.labels, nsLabels.get(namespace), namespace, opts.clusterDomain)),
      authorizationPolicies: [],
    });
  }

  workloads.sort((a, b) => compare(key(a.namespace, a.name), key(b.namespace, b.name)));
  const serviceList = [...services.values()].map((s) => s.model).sort((a, b) => compare(key(a.namespace, a.name), key(b.namespace, b.name)));
  const authz = buildPolicies(objs.authorizationPolicies ?? [], objs.peerAuthentications ?? [], workloads, opts.rootNamespace);
  return { data: { workloads: authz.workloads, services: serviceList, policies: authz.policies, notices: [...notices, ...authz.notices] }, conflicts: conflicts.sort() };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
