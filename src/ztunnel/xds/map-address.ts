import type { GatewayAddress, Service, Vip, Workload } from "../state/types.js";
import { arr, ipFromBytes, num, obj, port, presentFields, str, strings, type Obj } from "./decode-util.js";
import { ResourceError } from "./errors.js";

// istio.workload.Address → our Workload / Service (DESIGN §13). Every field we read is checked;
// fields present that we do not act on are returned as `ignored` (config_dump notices); fields
// that change where traffic goes (waypoint, network gateway, load-balancing mode) are carried
// into the state, whose routing seam (state/routing.ts) fails closed on what is not routed.

export interface MappedWorkload {
  readonly kind: "workload";
  readonly workload: Workload;
  readonly ignored: readonly string[];
}

export interface MappedService {
  readonly kind: "service";
  readonly service: Service;
  readonly ignored: readonly string[];
}

export type MappedAddress = MappedWorkload | MappedService;

const DEFAULT_TRUST_DOMAIN = "cluster.local";
const DEFAULT_HBONE_PORT = 15008;

/** Workload fields we keep for operators and telemetry but do not route or authorize by. */
const WORKLOAD_IGNORED = [
  "native_tunnel",
  "application_tunnel",
  "network_mode",
  "capacity",
  "locality",
  "canonical_name",
  "canonical_revision",
  "workload_name",
  "workload_type",
  "cluster_id",
] as const;
const SERVICE_IGNORED = ["subject_alt_names"] as const;
const LB_MODES: Readonly<Record<string, string>> = { STRICT: "Strict", PASSTHROUGH: "Passthrough", FAILOVER: "Failover" };
const IP_FAMILIES: Readonly<Record<string, Service["ipFamilies"]>> = { IPV4_ONLY: "IPv4", IPV6_ONLY: "IPv6" };

/** Maps a decoded Address; `name` is the xDS resource name (the workload uid / ns/hostname). */
export function mapAddress(name: string, decoded: Obj): MappedAddress {
  const w = decoded.workload;
  const s = decoded.service;
  if (w !== undefined && w !== null) return mapWorkload(name, obj(w, name, "workload"));
  if (s !== undefined && s !== null) return mapService(name, obj(s, name, "service"));
  throw new ResourceError(name, "Address holds neither a workload nor a service");
}

export function mapWorkload(name: string, w: Obj): MappedWorkload {
  const uid = str(w, "uid");
  if (uid === "") throw new ResourceError(name, "workload has no uid");
  if (uid !== name) throw new ResourceError(name, `workload uid ${uid} differs from its resource name`);
  const namespace = str(w, "namespace");
  if (namespace === "") throw new ResourceError(name, "workload has no namespace");
  const addresses = arr(w, "addresses").map((a, i) => ipFromBytes(a, name, `addresses[${i}]`));
  const tunnel = str(w, "tunnel_protocol") || "NONE";
  const ignored: string[] = presentFields(w, WORKLOAD_IGNORED);
  let protocol: Workload["protocol"];
  if (tunnel === "HBONE") protocol = "HBONE";
  else if (tunnel === "NONE") protocol = "TCP";
  else if (tunnel === "LEGACY_ISTIO_MTLS") {
    // A sidecar workload: we cannot originate Istio's legacy mTLS; it gets plain TCP, which a
    // PERMISSIVE sidecar accepts and a STRICT one refuses (never a weaker identity).
    protocol = "TCP";
    ignored.push("tunnel_protocol=LEGACY_ISTIO_MTLS (sent plain TCP)");
  } else throw new ResourceError(name, `tunnel_protocol ${tunnel} is not supported`);
  const status = str(w, "status") || "HEALTHY";
  if (status !== "HEALTHY" && status !== "UNHEALTHY") throw new ResourceError(name, `status ${status} is not known`);
  const services: Record<string, Record<string, number>> = {};
  const svcMap = obj(w.services, name, "services");
  for (const [key, pl] of Object.entries(svcMap)) {
    if (!/^[^/]+\/[^/]+$/.test(key)) throw new ResourceError(name, `services key "${key}" is not namespace/hostname`);
    const ports: Record<string, number> = {};
    for (const [i, p] of arr(obj(pl, name, `services[${key}]`), "ports").entries()) {
      const po = obj(p, name, `services[${key}].ports[${i}]`);
      ports[String(port(num(po, "service_port"), name, `services[${key}].ports[${i}].service_port`))] = port(
        num(po, "target_port"),
        name,
        `services[${key}].ports[${i}].target_port`,
        true,
      );
    }
    services[key] = ports;
  }
  const waypoint = w.waypoint === undefined ? undefined : gateway(obj(w.waypoint, name, "waypoint"), name, "waypoint");
  const networkGateway = w.network_gateway === undefined ? undefined : gateway(obj(w.network_gateway, name, "network_gateway"), name, "network_gateway");
  const workload: Workload = {
    uid,
    name: str(w, "name"),
    namespace,
    serviceAccount: str(w, "service_account") || "default",
    trustDomain: str(w, "trust_domain") || DEFAULT_TRUST_DOMAIN,
    workloadIps: addresses,
    protocol,
    node: str(w, "node") || undefined,
    network: str(w, "network"),
    status: status === "HEALTHY" ? "Healthy" : "Unhealthy",
    services,
    labels: {},
    authorizationPolicies: strings(w, "authorization_policies"),
    ...(str(w, "hostname") !== "" ? { hostname: str(w, "hostname") } : {}),
    ...(waypoint !== undefined ? { waypoint } : {}),
    ...(networkGateway !== undefined ? { networkGateway } : {}),
  };
  return { kind: "workload", workload, ignored };
}

export function mapService(name: string, s: Obj): MappedService {
  const namespace = str(s, "namespace");
  const hostname = str(s, "hostname");
  if (namespace === "" || hostname === "") throw new ResourceError(name, "service needs a namespace and a hostname");
  if (name !== `${namespace}/${hostname}`) throw new ResourceError(name, `service ${namespace}/${hostname} differs from its resource name`);
  const vips: Vip[] = arr(s, "addresses").map((a, i) => {
    const o = obj(a, name, `addresses[${i}]`);
    return { network: str(o, "network"), address: ipFromBytes(o.address, name, `addresses[${i}].address`) };
  });
  const ports: Record<string, number> = {};
  for (const [i, p] of arr(s, "ports").entries()) {
    const o = obj(p, name, `ports[${i}]`);
    ports[String(port(num(o, "service_port"), name, `ports[${i}].service_port`))] = port(num(o, "target_port"), name, `ports[${i}].target_port`, true);
  }
  const ignored: string[] = presentFields(s, SERVICE_IGNORED);
  const lb = obj(s.load_balancing, name, "load_balancing");
  const mode = LB_MODES[str(lb, "mode")];
  if (mode === "Failover" || arr(lb, "routing_preference").length > 0 || str(lb, "health_policy") === "ALLOW_ALL") ignored.push("load_balancing");
  const waypoint = s.waypoint === undefined ? undefined : gateway(obj(s.waypoint, name, "waypoint"), name, "waypoint");
  const family = IP_FAMILIES[str(s, "ip_families")];
  const service: Service = {
    ...(family !== undefined ? { ipFamilies: family } : {}),
    name: str(s, "name"),
    namespace,
    hostname,
    vips,
    ports,
    subjectAltNames: strings(s, "subject_alt_names"),
    ...(waypoint !== undefined ? { waypoint } : {}),
    ...(mode === "Strict" || mode === "Passthrough" ? { loadBalancerMode: mode } : {}),
  };
  return { kind: "service", service, ignored };
}

function gateway(g: Obj, resource: string, field: string): GatewayAddress {
  const hboneMtlsPort = num(g, "hbone_mtls_port") || DEFAULT_HBONE_PORT;
  port(hboneMtlsPort, resource, `${field}.hbone_mtls_port`);
  if (g.address !== undefined && g.address !== null) {
    const a = obj(g.address, resource, `${field}.address`);
    return { destination: { address: { network: str(a, "network"), address: ipFromBytes(a.address, resource, `${field}.address.address`) } }, hboneMtlsPort };
  }
  if (g.hostname !== undefined && g.hostname !== null) {
    const h = obj(g.hostname, resource, `${field}.hostname`);
    const namespace = str(h, "namespace");
    const hostname = str(h, "hostname");
    if (hostname === "") throw new ResourceError(resource, `${field}.hostname has no hostname`);
    return { destination: { hostname: { namespace, hostname } }, hboneMtlsPort };
  }
  throw new ResourceError(resource, `${field} has neither an address nor a hostname`);
}
