import { isIP } from "node:net";
import { parse as parseYaml } from "yaml";
import { AmbientError } from "../../shared/errors.js";
import { canonicalIp } from "./ip.js";
import {
  serviceKey,
  type Policy,
  type PolicyAction,
  type PolicyMatch,
  type PolicyScope,
  type Service,
  type StateData,
  type Vip,
  type Workload,
} from "./types.js";
import { closest } from "../../shared/did-you-mean.js";

// ztunnel's local config file (LOCAL_XDS_PATH): YAML with `workloads`, `services`, `policies`.
// Validation is strict (unknown keys are rejected with a hint) and every error names the
// field path, e.g. `workloads[2].workloadIps[0]: "10.0.0.x" is not an IP address`.

export class LocalConfigError extends AmbientError {
  readonly path: string;
  readonly detail: string;

  constructor(path: string, detail: string, source?: string) {
    super("LOCAL_CONFIG_INVALID", `${source !== undefined ? `${source}: ` : ""}${path}: ${detail}`);
    this.path = path;
    this.detail = detail;
  }
}

const DEFAULT_TRUST_DOMAIN = "cluster.local";
const DEFAULT_NETWORK = "";

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
    throw err;
  }
}

export function validateLocalConfig(doc: unknown): StateData {
  if (doc === null || doc === undefined) return { workloads: [], services: [], policies: [] };
  const root = object(doc, "(document)");
  checkKeys(root, "", ["workloads", "services", "policies"]);
  const workloads = list(root.workloads, "workloads").map((w, i) => workload(w, `workloads[${i}]`));
  const services = list(root.services, "services").map((s, i) => service(s, `services[${i}]`));
  const policies = list(root.policies, "policies").map((p, i) => policy(p, `policies[${i}]`));

  unique(workloads.map((w) => w.uid), (i) => `workloads[${i}].uid`, "uid");
  unique(
    workloads.flatMap((w, i) => w.workloadIps.map((ip, j) => ({ key: `${w.network}/${ip}`, at: `workloads[${i}].workloadIps[${j}]` }))),
    undefined,
    "workload IP",
  );
  unique(services.map((s) => serviceKey(s.namespace, s.hostname)), (i) => `services[${i}].hostname`, "namespace/hostname");
  unique(policies.map((p) => `${p.namespace}/${p.name}`), (i) => `policies[${i}].name`, "namespace/name");
  return { workloads, services, policies };
}

type Obj = Record<string, unknown>;

function workload(v: unknown, at: string): Workload {
  const o = object(v, at);
  checkKeys(o, at, ["uid", "name", "namespace", "serviceAccount", "trustDomain", "workloadIps", "protocol", "node", "network", "status", "services", "hostname"], IGNORED_WORKLOAD_KEYS);
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
  return {
    uid: o.uid === undefined ? `${namespace}/${name}` : str(o.uid, `${at}.uid`),
    name,
    namespace,
    serviceAccount: o.serviceAccount === undefined ? "default" : str(o.serviceAccount, `${at}.serviceAccount`),
    trustDomain: o.trustDomain === undefined ? DEFAULT_TRUST_DOMAIN : str(o.trustDomain, `${at}.trustDomain`),
    workloadIps,
    protocol: oneOf(o.protocol ?? "TCP", `${at}.protocol`, ["HBONE", "TCP"] as const),
    node: o.node === undefined ? undefined : str(o.node, `${at}.node`),
    network: o.network === undefined ? DEFAULT_NETWORK : str(o.network, `${at}.network`, true),
    status: oneOf(o.status ?? "Healthy", `${at}.status`, ["Healthy", "Unhealthy"] as const),
    services,
    ...(o.hostname !== undefined ? { hostname: dnsLabel(o.hostname, `${at}.hostname`) } : {}),
  };
}

function service(v: unknown, at: string): Service {
  const o = object(v, at);
  checkKeys(o, at, ["name", "namespace", "hostname", "vips", "ports", "subjectAltNames", "portNames", "ipFamilies"], IGNORED_SERVICE_KEYS);
  const ports = portMap(o.ports ?? {}, `${at}.ports`);
  return {
    name: str(o.name, `${at}.name`),
    namespace: str(o.namespace, `${at}.namespace`),
    hostname: str(o.hostname, `${at}.hostname`),
    vips: list(o.vips, `${at}.vips`).map((x, j) => vip(x, `${at}.vips[${j}]`)),
    ports,
    subjectAltNames: list(o.subjectAltNames, `${at}.subjectAltNames`).map((s, j) => str(s, `${at}.subjectAltNames[${j}]`)),
    ...(o.portNames !== undefined ? { portNames: portNames(o.portNames, ports, `${at}.portNames`) } : {}),
    ...(o.ipFamilies !== undefined ? { ipFamilies: oneOf(o.ipFamilies, `${at}.ipFamilies`, ["IPv4", "IPv6"] as const) } : {}),
  };
}

// A VIP is {network?, address} or, as ztunnel prints them, "network/address" or "address".
function vip(v: unknown, at: string): Vip {
  if (typeof v === "string") {
    const slash = v.lastIndexOf("/");
    return { network: slash < 0 ? DEFAULT_NETWORK : v.slice(0, slash), address: ipAddr(slash < 0 ? v : v.slice(slash + 1), at) };
  }
  const o = object(v, at);
  checkKeys(o, at, ["network", "address"]);
  return {
    network: o.network === undefined ? DEFAULT_NETWORK : str(o.network, `${at}.network`, true),
    address: ipAddr(o.address, `${at}.address`),
  };
}

function policy(v: unknown, at: string): Policy {
  const o = object(v, at);
  checkKeys(o, at, ["name", "namespace", "scope", "action", "rules", "dryRun"]);
  return {
    name: str(o.name, `${at}.name`),
    namespace: str(o.namespace, `${at}.namespace`),
    scope: oneOf<PolicyScope>(o.scope ?? "Namespace", `${at}.scope`, ["Global", "Namespace", "WorkloadSelector"]),
    action: oneOf<PolicyAction>(o.action ?? "Allow", `${at}.action`, ["Allow", "Deny", "Audit"]),
    rules: list(o.rules, `${at}.rules`).map((rule, i) =>
      list(rule, `${at}.rules[${i}]`).map((clause, j) =>
        list(clause, `${at}.rules[${i}][${j}]`).map((m, k) => policyMatch(m, `${at}.rules[${i}][${j}][${k}]`)),
      ),
    ),
    ...(o.dryRun !== undefined ? { dryRun: bool(o.dryRun, `${at}.dryRun`) } : {}),
  };
}

const STRING_MATCH_KEYS = ["namespaces", "notNamespaces", "principals", "notPrincipals"] as const;
const IP_MATCH_KEYS = ["sourceIps", "notSourceIps", "destinationIps", "notDestinationIps"] as const;
const PORT_MATCH_KEYS = ["destinationPorts", "notDestinationPorts"] as const;

function policyMatch(v: unknown, at: string): PolicyMatch {
  const o = object(v, at);
  checkKeys(o, at, [...STRING_MATCH_KEYS, ...IP_MATCH_KEYS, ...PORT_MATCH_KEYS]);
  const out: Record<string, readonly string[] | readonly number[]> = {};
  for (const k of STRING_MATCH_KEYS) if (o[k] !== undefined) out[k] = list(o[k], `${at}.${k}`).map((s, i) => str(s, `${at}.${k}[${i}]`));
  for (const k of IP_MATCH_KEYS) if (o[k] !== undefined) out[k] = list(o[k], `${at}.${k}`).map((s, i) => cidr(s, `${at}.${k}[${i}]`));
  for (const k of PORT_MATCH_KEYS) if (o[k] !== undefined) out[k] = list(o[k], `${at}.${k}`).map((p, i) => port(p, `${at}.${k}[${i}]`));
  return out as PolicyMatch;
}

// ---- primitives --------------------------------------------------------------------------

function object(v: unknown, at: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new LocalConfigError(at, `expected a mapping, got ${describe(v)}`);
  return v as Obj;
}

function list(v: unknown, at: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new LocalConfigError(at, `expected a list, got ${describe(v)}`);
  return v;
}

function str(v: unknown, at: string, allowEmpty = false): string {
  if (v === undefined) throw new LocalConfigError(at, "is required");
  if (typeof v !== "string") throw new LocalConfigError(at, `expected a string, got ${describe(v)}`);
  if (!allowEmpty && v.trim() === "") throw new LocalConfigError(at, "must not be empty");
  return v;
}

function bool(v: unknown, at: string): boolean {
  if (typeof v !== "boolean") throw new LocalConfigError(at, `must be true or false, got ${describe(v)}`);
  return v;
}

function oneOf<T extends string>(v: unknown, at: string, allowed: readonly T[]): T {
  if (typeof v === "string" && (allowed as readonly string[]).includes(v)) return v as T;
  throw new LocalConfigError(at, `${JSON.stringify(v)} is not one of ${allowed.join(", ")}`);
}

function ipAddr(v: unknown, at: string): string {
  const s = str(v, at);
  const ip = canonicalIp(s);
  if (ip === undefined) throw new LocalConfigError(at, `"${s}" is not an IP address`);
  return ip;
}

function cidr(v: unknown, at: string): string {
  const s = str(v, at);
  const [addr = "", len, ...rest] = s.split("/");
  const family = isIP(addr);
  const max = family === 6 ? 128 : 32;
  if (family === 0 || rest.length > 0 || (len !== undefined && (!/^\d+$/.test(len) || Number(len) > max))) {
    throw new LocalConfigError(at, `"${s}" is not an IP address or CIDR`);
  }
  return s;
}

function port(v: unknown, at: string): number {
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new LocalConfigError(at, `${JSON.stringify(v)} is not a port (0-65535)`);
  }
  return n;
}

function portMap(v: unknown, at: string): Record<string, number> {
  const o = object(v, at);
  const out: Record<string, number> = {};
  for (const [k, target] of Object.entries(o)) {
    const p = port(k, `${at}["${k}"]`);
    if (p === 0) throw new LocalConfigError(`${at}["${k}"]`, "service port must not be 0");
    out[String(p)] = port(target, `${at}["${k}"]`);
  }
  return out;
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

// Fields of ztunnel's own LocalConfig that this data plane does not use (yet): accepted and
// ignored, so a file written for Istio's ztunnel loads here; anything else is a typo.
const IGNORED_WORKLOAD_KEYS = [
  "waypoint",
  "networkGateway",
  "networkMode",
  "workloadName",
  "workloadType",
  "canonicalName",
  "canonicalRevision",
  "nativeTunnel",
  "authorizationPolicies",
  "clusterId",
  "locality",
  "capacity",
  "applicationTunnel",
];
const IGNORED_SERVICE_KEYS = ["endpoints", "waypoint", "loadBalancer"];

function checkKeys(o: Obj, at: string, known: readonly string[], ignored: readonly string[] = []): void {
  for (const k of Object.keys(o)) {
    if (known.includes(k) || ignored.includes(k)) continue;
    const hint = closest(k, known);
    throw new LocalConfigError(at === "" ? k : `${at}.${k}`, `unknown field${hint !== undefined ? ` (did you mean ${hint}?)` : ""}`);
  }
}

function unique<T extends string | { key: string; at: string }>(items: readonly T[], at: ((i: number) => string) | undefined, what: string): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    const key = typeof item === "string" ? item : item.key;
    const where = typeof item === "string" ? (at?.(i) ?? String(i)) : item.at;
    if (seen.has(key)) throw new LocalConfigError(where, `duplicate ${what} "${key.replace(/^\//, "")}"`);
    seen.add(key);
  });
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  return typeof v === "object" ? "a mapping" : `${typeof v} ${JSON.stringify(v)}`;
}
