import type { AuthzPolicy } from "../authz/types.js";

// The state ztunnel proxies by: workloads, services and authorization policies, in the shape
// of ztunnel's LocalConfig (camelCase). Plain data only, so a snapshot can be posted to
// worker threads (structured clone) unchanged. Policies are the one policy model
// (authz/types.ts); every source hands this state over already validated.

export type Protocol = "HBONE" | "TCP";
export type HealthStatus = "Healthy" | "Unhealthy";

export interface NetworkAddress {
  readonly network: string;
  readonly address: string;
}

/** istio.workload.GatewayAddress: a waypoint or a network gateway. */
export interface GatewayAddress {
  readonly destination: { readonly address: NetworkAddress } | { readonly hostname: { readonly namespace: string; readonly hostname: string } };
  /** Default 15008. */
  readonly hboneMtlsPort: number;
}

/** Where a waypoint is reached: its HBONE address and the identity it must present. */
export interface WaypointRoute {
  readonly ip: string;
  readonly port: number;
  readonly identity: { readonly trustDomain: string; readonly namespace: string; readonly serviceAccount: string };
}

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
  /** Pod labels (Kubernetes mode, or written in the local file): selectors and metrics. */
  readonly labels: Readonly<Record<string, string>>;
  /** The pod's DNS hostname (spec.hostname): `<hostname>.<headless service host>` resolves to it. */
  readonly hostname?: string;
  /** WorkloadSelector policies that apply to this workload, `namespace/name` keys. */
  readonly authorizationPolicies: readonly string[];
  /** Traffic to this workload must go through this waypoint (see routing.ts). */
  readonly waypoint?: GatewayAddress | undefined;
  /** Set by the store (waypoints.ts) from `waypoint` when it resolves; absent = no route. */
  readonly waypointRoute?: WaypointRoute | undefined;
  /** This workload is reached through this gateway (another network; see routing.ts). */
  readonly networkGateway?: GatewayAddress | undefined;
  /**
   * Set by the store (routing.ts) when a field we do not honour changes where traffic to this
   * workload must go: every connection to it is refused with this reason.
   */
  readonly failClosed?: string | undefined;
}

export type Vip = NetworkAddress;

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
  readonly waypoint?: GatewayAddress | undefined;
  /** Set by the store (waypoints.ts) from `waypoint` when it resolves; absent = no route. */
  readonly waypointRoute?: WaypointRoute | undefined;
  /** Load-balancing mode when it changes where traffic may go (Strict, Passthrough; NodeLocal from internalTrafficPolicy: Local). */
  readonly loadBalancerMode?: string | undefined;
  /** As Workload.failClosed, for connections addressed to the service. */
  readonly failClosed?: string | undefined;
}

/**
 * Something a source gave that we do not act on as given (DESIGN §14: nothing is dropped
 * silently). Shown in config_dump; each is logged once as a warning.
 *  - not-enforced: accepted, changes nothing we do (e.g. locality, canonicalName).
 *  - fails-closed: would change where traffic goes; the object refuses traffic instead.
 *  - translated: a policy enforced in a stricter form (L7 rules at L4, CUSTOM).
 *  - dropped: not applied at all, and dropping it cannot widen access (AUDIT).
 */
export interface ConfigNotice {
  /** e.g. `workload default/web`, `policy default/deny-admin`. */
  readonly object: string;
  readonly field: string;
  readonly effect: "not-enforced" | "fails-closed" | "translated" | "dropped";
  readonly reason: string;
}

export interface StateData {
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
  readonly policies: readonly AuthzPolicy[];
  readonly notices: readonly ConfigNotice[];
}

/** What the main thread posts to workers; `version` only ever grows. */
export interface StateSnapshot extends StateData {
  readonly version: number;
}

export function serviceKey(namespace: string, hostname: string): string {
  return `${namespace}/${hostname}`;
}

export const EMPTY_STATE: StateData = Object.freeze({ workloads: [], services: [], policies: [], notices: [] });
