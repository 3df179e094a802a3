import type { ConfigNotice, GatewayAddress, Service, StateData, Workload } from "./types.js";
import { withWaypointRoutes } from "./waypoints.js";

// The seam for fields that change WHERE traffic must go (a waypoint, a network gateway, a
// load-balancing mode that restricts or bypasses endpoint choice). This data plane does not
// route through them yet, and bypassing them would skip the waypoint's policies or send
// traffic where it must not go. So the store marks such a workload or service `failClosed`:
// outbound to it is refused (worker/resolve.ts) and inbound to it is denied (authz engine),
// with the reason below. A waypoint that resolves (waypoints.ts) is routed through by the
// outbound route (worker/outbound-route.ts) and is not a reason to fail closed.

const DEFAULT_HBONE_PORT = 15008;

export function describeGateway(g: GatewayAddress): string {
  const d = g.destination;
  const where = "address" in d ? `${d.address.network === "" ? "" : `${d.address.network}/`}${d.address.address}` : `${d.hostname.namespace}/${d.hostname.hostname}`;
  return g.hboneMtlsPort === DEFAULT_HBONE_PORT ? where : `${where}:${g.hboneMtlsPort}`;
}

/** Why traffic to this workload cannot be sent as addressed; undefined when it can. */
export function unsupportedWorkloadRouting(w: Workload): { field: string; reason: string } | undefined {
  if (w.waypoint !== undefined && w.waypointRoute === undefined) {
    return { field: "waypoint", reason: `workload ${w.namespace}/${w.name} must be reached through waypoint ${describeGateway(w.waypoint)}, which is not in the state: its traffic is refused rather than bypassing the waypoint` };
  }
  if (w.networkGateway !== undefined) {
    return { field: "networkGateway", reason: `workload ${w.namespace}/${w.name} is on network "${w.network}" behind gateway ${describeGateway(w.networkGateway)}, which this ztunnel does not route through: its traffic is refused` };
  }
  return undefined;
}

export function unsupportedServiceRouting(s: Service): { field: string; reason: string } | undefined {
  if (s.waypoint !== undefined && s.waypointRoute === undefined) {
    return { field: "waypoint", reason: `service ${s.hostname} must be reached through waypoint ${describeGateway(s.waypoint)}, which is not in the state: connections to it are refused rather than bypassing the waypoint` };
  }
  if (s.loadBalancerMode === "NodeLocal") {
    return { field: "internalTrafficPolicy", reason: `service ${s.hostname} allows only endpoints on the client's node (internalTrafficPolicy: Local), which this ztunnel does not implement: connections to it are refused rather than sent to another node` };
  }
  if (s.loadBalancerMode === "Strict" || s.loadBalancerMode === "Passthrough") {
    return { field: "loadBalancer.mode", reason: `service ${s.hostname} asks for load-balancing mode ${s.loadBalancerMode}, which this ztunnel does not implement: connections to it are refused rather than sent to an endpoint it would not choose` };
  }
  return undefined;
}

/** Marks what cannot be routed as given `failClosed`, and reports each once (a notice). */
export function withRoutingChecks(input: StateData): StateData {
  const data = withWaypointRoutes(input);
  const notices: ConfigNotice[] = [];
  const workloads = data.workloads.map((w) => {
    const r = unsupportedWorkloadRouting(w);
    if (r === undefined) return w.failClosed === undefined ? w : { ...w, failClosed: undefined };
    notices.push({ object: `workload ${w.namespace}/${w.name}`, field: r.field, effect: "fails-closed", reason: r.reason });
    return { ...w, failClosed: r.reason };
  });
  const services = data.services.map((s) => {
    const r = unsupportedServiceRouting(s);
    if (r === undefined) return s.failClosed === undefined ? s : { ...s, failClosed: undefined };
    notices.push({ object: `service ${s.namespace}/${s.hostname}`, field: r.field, effect: "fails-closed", reason: r.reason });
    return { ...s, failClosed: r.reason };
  });
  if (notices.length === 0) return data === input ? input : data;
  return { ...data, workloads, services, notices: [...data.notices, ...notices] };
}
