// The state ztunnel proxies by: workloads, services and authorization policies, in the shape
// of ztunnel's LocalConfig (camelCase). Plain data only, so a snapshot can be posted to
// worker threads (structured clone) unchanged.

export type Protocol = "HBONE" | "TCP";
export type HealthStatus = "Healthy" | "Unhealthy";

export interface Workload {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly trustDomain: string;
  /** Canonical IP strings. */
  readonly workloadIps: readonly string[];
  readonly protocol: Protocol;
  readonly node: string | undefined;
  readonly network: string;
  readonly status: HealthStatus;
  /** "namespace/hostname" → { servicePort: targetPort } (ztunnel's LocalWorkload.services). */
  readonly services: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** The pod's DNS hostname (spec.hostname): `<hostname>.<headless service host>` resolves to it. */
  readonly hostname?: string;
}

export interface Vip {
  readonly network: string;
  readonly address: string;
}

export interface Service {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly vips: readonly Vip[];
  /** servicePort → targetPort (0 = same as the service port). */
  readonly ports: Readonly<Record<string, number>>;
  readonly subjectAltNames: readonly string[];
  /** servicePort → port name: SRV records `_<name>._tcp.<hostname>` (the DNS proxy). */
  readonly portNames?: Readonly<Record<string, string>>;
  /** Single-stack services answer only A or only AAAA (ztunnel's ipFamilies); absent: both. */
  readonly ipFamilies?: "IPv4" | "IPv6";
}

export type PolicyScope = "Global" | "Namespace" | "WorkloadSelector";
export type PolicyAction = "Allow" | "Deny" | "Audit";

/** One match of ztunnel's Authorization rules; every field is optional. */
export interface PolicyMatch {
  readonly namespaces?: readonly string[];
  readonly notNamespaces?: readonly string[];
  readonly principals?: readonly string[];
  readonly notPrincipals?: readonly string[];
  readonly sourceIps?: readonly string[];
  readonly notSourceIps?: readonly string[];
  readonly destinationIps?: readonly string[];
  readonly notDestinationIps?: readonly string[];
  readonly destinationPorts?: readonly number[];
  readonly notDestinationPorts?: readonly number[];
}

/** rules: OR of rules, each an AND of clauses, each an OR of matches (ztunnel's nesting). */
export interface Policy {
  readonly name: string;
  readonly namespace: string;
  readonly scope: PolicyScope;
  readonly action: PolicyAction;
  readonly rules: readonly (readonly (readonly PolicyMatch[])[])[];
  /** Evaluated and logged, never enforced. */
  readonly dryRun?: boolean;
}

export interface StateData {
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
  readonly policies: readonly Policy[];
}

/** What the main thread posts to workers; `version` only ever grows. */
export interface StateSnapshot extends StateData {
  readonly version: number;
}

export function serviceKey(namespace: string, hostname: string): string {
  return `${namespace}/${hostname}`;
}
