import { parse as parseYaml } from "yaml";
import { AuthzPolicyError } from "../authz/errors.js";
import { policyKey, type AuthzPolicy } from "../authz/types.js";
import { parsePolicies } from "../authz/validate.js";
import {
  DEFAULT_NETWORK,
  LocalConfigError,
  bool,
  checkKeys,
  gatewayAddress,
  ipAddr,
  list,
  networkAddress,
  object,
  oneOf,
  port,
  portMap,
  str,
  stringMap,
  unique,
  type Obj,
} from "./local-fields.js";
import { resolveSelectors, type PolicySelector } from "./selectors.js";
import { serviceKey, type ConfigNotice, type Service, type StateData, type Workload } from "./types.js";

export { LocalConfigError } from "./local-fields.js";

// ztunnel's local config file (LOCAL_XDS_PATH): YAML with `workloads`, `services`, `policies`,
// in Istio's LocalConfig shape, so a file written for Istio's ztunnel loads unchanged. Every
// field of Istio's LocalConfig is accepted: honoured, or reported (a notice in config_dump) as
// not acted on; a field that changes where traffic goes is honoured or fails closed
// (routing.ts). Unknown keys are typos and rejected with a hint. Our additions: workload
// `labels`, and a policy `selector: {matchLabels}` resolved against labels at load into the
// selected workloads' `authorizationPolicies` (Istio's model: the control plane resolves).

const DEFAULT_TRUST_DOMAIN = "cluster.local";

// Workload fields of Istio's LocalConfig we accept but do not act on, and why.
const WORKLOAD_NOT_ENFORCED: Readonly<Record<string, string>> = {
  networkMode: "host-network handling is not implemented; the workload is proxied by its IPs like any other",
  workloadName: "not used: metrics and logs name the workload by `name`",
  workloadType: "not used: metrics and logs name the workload by `name`",
  canonicalName: "not used: metrics take the canonical service from the labels service.istio.io/canonical-name, app.kubernetes.io/name or app",
  canonicalRevision: "not used: metrics take the canonical revision from the labels service.istio.io/canonical-revision, app.kubernetes.io/version or version",
  nativeTunnel: "not used: traffic to an HBONE workload always goes to its port 15008",
  applicationTunnel: "not implemented: the application receives the plain stream, no PROXY protocol header",
  clusterId: "not used: metrics carry this node's CLUSTER_ID",
  locality: "locality-aware load balancing is not implemented: endpoints are picked uniformly",
  capacity: "endpoint weights are not implemented: endpoints are picked uniformly",
};
const WORKLOAD_KEYS = [
  "uid",
  "name",
  "namespace",
  "serviceAccount",
  "trustDomain",
  "workloadIps",
  "protocol",
  "node",
  "network",
  "status",
  "services",
  "labels",
  "authorizationPolicies",
  "waypoint",
  "networkGateway",
  "hostname",
  ...Object.keys(WORKLOAD_NOT_ENFORCED),
];

const SERVICE_NOT_ENFORCED: Readonly<Record<string, string>> = {
  subjectAltNames: "not used: the expected server identity is each endpoint workload's own",
  canonical: "not used: one service per namespace/hostname",
};
const SERVICE_KEYS = ["name", "namespace", "hostname", "vips", "ports", "portNames", "ipFamilies", "endpoints", "waypoint", "loadBalancer", ...Object.keys(SERVICE_NOT_ENFORCED)];

/** Parses and validates the YAML text; `source` (a file name) prefixes error messages. */
export function parseLocalConfig(text: string, source?: string): StateData {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new LocalConfigError("(document)", `not valid YAML: ${(err as Error).message}`, source);
  }
  try {
    return validateLocalConfig(doc);
  } catch (err) {
    if (err instanceof LocalConfigError && source !== undefined) throw new LocalConfigError(err.path, err.detail, source);
    if (err instanceof AuthzPolicyError) throw new LocalConfigError(err.path, err.detail, source);
    throw err;
  }
}

export function validateLocalConfig(doc: unknown): StateData {
  if (doc === null || doc === undefined) return { workloads: [], services: [], policies: [], notices: [] };
  const root = object(doc, "(document)");
  checkKeys(root, "", ["workloads", "services", "policies"]);
  const notices: ConfigNotice[] = [];
  let workloads = list(root.workloads, "workloads").map((w, i) => workload(w, `workloads[${i}]`, notices));
  const parsedServices = list(root.services, "services").map((s, i) => service(s, `services[${i}]`, notices));
  const services = parsedServices.map((s) => s.service);
  const policies = parsePolicies(root.policies, "policies", ["selector"]);
  const selectors = list(root.policies, "policies").flatMap((p, i) => selectorOf(p, policies[i], `policies[${i}]`));

  unique(workloads.map((w) => w.uid), (i) => `workloads[${i}].uid`, "uid");
  unique(
    workloads.flatMap((w, i) => w.workloadIps.map((ip, j) => ({ key: `${w.network}/${ip}`, at: `workloads[${i}].workloadIps[${j}]` }))),
    undefined,
    "workload IP",
  );
  unique(services.map((s) => serviceKey(s.namespace, s.hostname)), (i) => `services[${i}].hostname`, "namespace/hostname");

  workloads = addEndpoints(workloads, parsedServices);
  checkPolicyRefs(workloads, policies);
  workloads = resolveSelectors(workloads, selectors);
  return { workloads, services, policies, notices };
}

type Notices = ConfigNotice[];

function workload(v: unknown, at: string, notices: Notices): Workload {
  const o = object(v, at);
  checkKeys(o, at, WORKLOAD_KEYS);
  const name = str(o.name, `${at}.name`);
  const namespace = str(o.namespace, `${at}.namespace`);
  const workloadIps = list(o.workloadIps, `${at}.workloadIps`).map((ip, j) => ipAddr(ip, `${at}.workloadIps[${j}]`));
  const services: Record<string, Record<string, number>> = {};
  if (o.services !== undefined) {
    const svcs = object(o.services, `${at}.services`);
    for (const [key, ports] of Object.entries(svcs)) {
      const kat = `${at}.services["${key}"]`;
      if (!/^[^/\s]+\/[^/\s]+$/.test(key)) throw new LocalConfigError(kat, `"${key}" is not "namespace/hostname"`);
      services[key] = portMap(ports, kat);
    }
  }
  const policies = list(o.authorizationPolicies, `${at}.authorizationPolicies`).map((p, j) => {
    const s = str(p, `${at}.authorizationPolicies[${j}]`);
    if (!/^[^/\s]+\/[^/\s]+$/.test(s)) throw new LocalConfigError(`${at}.authorizationPolicies[${j}]`, `"${s}" is not "namespace/name"`);
    return s;
  });
  reportFields(o, WORKLOAD_NOT_ENFORCED, `workload ${namespace}/${name}`, notices, { networkMode: "Standard", nativeTunnel: false, capacity: 1 });
  return {
    uid: o.uid === undefined ? `${namespace}/${name}` : str(o.uid, `${at}.uid`),
    name,
    namespace,
    serviceAccount: o.serviceAccount === undefined ? "default" : str(o.serviceAccount, `${at}.serviceAccount`),
    trustDomain: o.trustDomain === undefined ? DEFAULT_TRUST_DOMAIN : str(o.trustDomain, `${at}.trustDomain`),
    workloadIps,
    protocol: oneOf(o.protocol ?? "TCP", `${at}.protocol`, ["HBONE", "TCP"] as const),
    node: o.node === undefined || o.node === "" ? undefined : str(o.node, `${at}.node`),
    network: o.network === undefined ? DEFAULT_NETWORK : str(o.network, `${at}.network`, true),
    status: oneOf(o.status ?? "Healthy", `${at}.status`, ["Healthy", "Unhealthy"] as const),
    services,
    labels: o.labels === undefined ? {} : stringMap(o.labels, `${at}.labels`),
    authorizationPolicies: [...new Set(policies)].sort(),
    ...(o.hostname !== undefined ? { hostname: dnsLabel(o.hostname, `${at}.hostname`) } : {}),
    ...(o.waypoint !== undefined && o.waypoint !== null ? { waypoint: gatewayAddress(o.waypoint, `${at}.waypoint`) } : {}),
    ...(o.networkGateway !== undefined && o.networkGateway !== null ? { networkGateway: gatewayAddress(o.networkGateway, `${at}.networkGateway`) } : {}),
  };
}

interface EndpointSpec {
  readonly workloadUid: string;
  readonly ports: Record<string, number>;
  readonly at: string;
}

function service(v: unknown, at: string, notices: Notices): { service: Service; endpoints: EndpointSpec[] } {
  const o = object(v, at);
  checkKeys(o, at, SERVICE_KEYS);
  const namespace = str(o.namespace, `${at}.namespace`);
  const hostname = str(o.hostname, `${at}.hostname`);
  const object_ = `service ${namespace}/${hostname}`;
  reportFields(o, SERVICE_NOT_ENFORCED, object_, notices, { canonical: false });
  let loadBalancerMode: string | undefined;
  if (o.loadBalancer !== undefined && o.loadBalancer !== null) {
    const lb = object(o.loadBalancer, `${at}.loadBalancer`);
    checkKeys(lb, `${at}.loadBalancer`, ["routingPreferences", "mode", "healthPolicy"]);
    loadBalancerMode = lb.mode === undefined ? "Standard" : oneOf(lb.mode, `${at}.loadBalancer.mode`, ["Standard", "Strict", "Failover", "Passthrough"] as const);
    if (loadBalancerMode === "Standard" || loadBalancerMode === "Failover") {
      notices.push({ object: object_, field: "loadBalancer", effect: "not-enforced", reason: `mode ${loadBalancerMode}, routing preferences and health policy are not implemented: healthy endpoints are picked uniformly` });
      loadBalancerMode = undefined;
    }
  }
  const endpoints: EndpointSpec[] = [];
  if (o.endpoints !== undefined && o.endpoints !== null) {
    for (const [key, raw] of Object.entries(object(o.endpoints, `${at}.endpoints`))) {
      const eat = `${at}.endpoints["${key}"]`;
      const e = object(raw, eat);
      checkKeys(e, eat, ["workloadUid", "port", "status"]);
      if (e.status !== undefined) {
        oneOf(e.status, `${eat}.status`, ["Healthy", "Unhealthy"] as const);
        notices.push({ object: object_, field: `endpoints["${key}"].status`, effect: "not-enforced", reason: "an endpoint's health comes from its workload's status" });
      }
      endpoints.push({ workloadUid: e.workloadUid === undefined ? key : str(e.workloadUid, `${eat}.workloadUid`), ports: portMap(e.port ?? {}, `${eat}.port`), at: eat });
    }
  }
  const ports = portMap(o.ports ?? {}, `${at}.ports`);
  // Istio writes Dual for dual-stack: the same as absent here.
  const ipFamilies = o.ipFamilies === undefined || o.ipFamilies === null ? undefined : oneOf(o.ipFamilies, `${at}.ipFamilies`, ["IPv4", "IPv6", "Dual"] as const);
  return {
    service: {
      name: str(o.name, `${at}.name`),
      namespace,
      hostname,
      vips: list(o.vips, `${at}.vips`).map((x, j) => networkAddress(x, `${at}.vips[${j}]`)),
      ports,
      ...(o.portNames !== undefined ? { portNames: portNames(o.portNames, ports, `${at}.portNames`) } : {}),
      ...(ipFamilies !== undefined && ipFamilies !== "Dual" ? { ipFamilies } : {}),
      subjectAltNames: list(o.subjectAltNames, `${at}.subjectAltNames`).map((s, j) => str(s, `${at}.subjectAltNames[${j}]`)),
      ...(o.waypoint !== undefined && o.waypoint !== null ? { waypoint: gatewayAddress(o.waypoint, `${at}.waypoint`) } : {}),
      ...(loadBalancerMode !== undefined ? { loadBalancerMode } : {}),
    },
    endpoints,
  };
}

/** A service's `endpoints` (Istio's form of membership) become the workloads' `services` entries. */
function addEndpoints(workloads: Workload[], services: readonly { service: Service; endpoints: readonly EndpointSpec[] }[]): Workload[] {
  const byUid = new Map(workloads.map((w, i) => [w.uid, i]));
  const out = [...workloads];
  for (const { service: s, endpoints } of services) {
    const key = serviceKey(s.namespace, s.hostname);
    for (const e of endpoints) {
      const i = byUid.get(e.workloadUid);
      const w = i === undefined ? undefined : out[i];
      if (i === undefined || w === undefined) throw new LocalConfigError(`${e.at}.workloadUid`, `no workload has uid "${e.workloadUid}"`);
      const ports = Object.keys(e.ports).length > 0 ? e.ports : { ...s.ports };
      out[i] = { ...w, services: { ...w.services, [key]: { ...(w.services[key] ?? {}), ...ports } } };
    }
  }
  return out;
}

// A workload naming a policy the file does not define would silently lose that policy (a
// DENY would fail open): refuse the file instead.
function checkPolicyRefs(workloads: readonly Workload[], policies: readonly AuthzPolicy[]): void {
  const keys = new Set(policies.map(policyKey));
  workloads.forEach((w, i) => {
    w.authorizationPolicies.forEach((k, j) => {
      if (!keys.has(k)) throw new LocalConfigError(`workloads[${i}].authorizationPolicies[${j}]`, `no policy "${k}" in this file (policies are named "namespace/name")`);
    });
  });
}

function selectorOf(raw: unknown, policy: AuthzPolicy | undefined, at: string): PolicySelector[] {
  const o = raw as Obj;
  if (o.selector === undefined || o.selector === null || policy === undefined) return [];
  if (policy.scope !== "WorkloadSelector") throw new LocalConfigError(`${at}.selector`, `only allowed with scope WorkloadSelector (scope is ${policy.scope})`);
  const sel = object(o.selector, `${at}.selector`);
  checkKeys(sel, `${at}.selector`, ["matchLabels"]);
  return [{ key: policyKey(policy), namespace: policy.namespace, matchLabels: sel.matchLabels === undefined ? {} : stringMap(sel.matchLabels, `${at}.selector.matchLabels`) }];
}

// servicePort → port name (a DNS label, as Kubernetes requires for named ports); every port
// named must be one of the service's ports.
function portNames(v: unknown, ports: Readonly<Record<string, number>>, at: string): Record<string, string> {
  const o = object(v, at);
  const out: Record<string, string> = {};
  for (const [k, name] of Object.entries(o)) {
    const p = port(k, `${at}["${k}"]`);
    if (ports[String(p)] === undefined) throw new LocalConfigError(`${at}["${k}"]`, `port ${p} is not one of the service's ports`);
    out[String(p)] = dnsLabel(name, `${at}["${k}"]`);
  }
  return out;
}

function dnsLabel(v: unknown, at: string): string {
  const s = str(v, at);
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(s)) throw new LocalConfigError(at, `"${s}" is not a DNS label (lower case letters, digits, '-', at most 63)`);
  return s;
}

function reportFields(o: Obj, reasons: Readonly<Record<string, string>>, object_: string, notices: Notices, defaults: Readonly<Record<string, unknown>>): void {
  for (const [field, reason] of Object.entries(reasons)) {
    const v = o[field];
    if (v === undefined || v === null || v === "" || (field in defaults && v === defaults[field])) continue;
    if ((Array.isArray(v) && v.length === 0) || (typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0)) continue;
    if (field === "nativeTunnel" || field === "canonical") bool(v, field);
    notices.push({ object: object_, field, effect: "not-enforced", reason });
  }
}
