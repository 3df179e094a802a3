import type { GatewayAddress } from "../state/types.js";

// Istio's ambient labels that put a waypoint in front of a pod or a service (on the object,
// else on its namespace; `none` opts out). In Kubernetes mode they change where traffic must
// go: the model records the waypoint and the store fails such destinations closed
// (state/routing.ts) until waypoints are routed through — never bypassing them.

export const USE_WAYPOINT_LABEL = "istio.io/use-waypoint";
export const USE_WAYPOINT_NAMESPACE_LABEL = "istio.io/use-waypoint-namespace";

type Labels = Readonly<Record<string, string>> | undefined;

export function waypointOf(own: Labels, namespaceLabels: Labels, namespace: string, clusterDomain: string): GatewayAddress | undefined {
  const source = own?.[USE_WAYPOINT_LABEL] !== undefined ? own : namespaceLabels;
  const name = source?.[USE_WAYPOINT_LABEL];
  if (name === undefined || name === "" || name === "none") return undefined;
  const ns = source?.[USE_WAYPOINT_NAMESPACE_LABEL] ?? namespace;
  return { destination: { hostname: { namespace: ns, hostname: `${name}.${ns}.svc.${clusterDomain}` } }, hboneMtlsPort: 15008 };
}
