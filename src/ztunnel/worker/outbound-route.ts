import { isIP } from "node:net";
import { ProxyError } from "../proxy/errors.js";
import type { WorkloadStore } from "../state/store.js";
import { makeIdentity } from "../tls/identity.js";
import { planOutbound, type Addr, type OutboundPlan } from "./resolve.js";

// Where a captured outbound connection goes, as one path (DESIGN §8):
//   original destination → resolve (workload IP, then service VIP) → policy steps → a plan:
//   HBONE to `<pod ip>:15008`, plain passthrough, or refuse.
// The policy steps see the resolved plan and may refuse or re-route it; a new rule (e.g. a
// waypoint) is one more entry in OUTBOUND_POLICY (viaWaypoint is).

export interface RouteInput {
  readonly store: WorkloadStore;
  /** The original destination (SO_ORIGINAL_DST), canonical IP. */
  readonly dst: Addr;
}

export type OutboundPolicyStep = (plan: OutboundPlan, input: RouteInput) => OutboundPlan;

/** ztunnel's own ports: in a pod (15001/15006/15008/15053) and on the node (admin, metrics, readiness). */
export const ZTUNNEL_PORTS: ReadonlySet<number> = new Set([15001, 15006, 15008, 15053, 15000, 15020, 15021]);

/**
 * Loop protection: a pod that dials loopback or one of ztunnel's own ports directly would make
 * us connect to ourselves (marked, so not captured again) and recurse. Refused, as Istio does.
 */
export const refuseSelfLoop: OutboundPolicyStep = (plan, { dst }) => {
  if (plan.t === "refuse") return plan;
  if (isLoopbackIp(dst.ip)) return { t: "refuse", error: new ProxyError("LOOP_DETECTED", `original destination ${dst.ip}:${dst.port} is loopback (self-loop)`) };
  if (ZTUNNEL_PORTS.has(dst.port)) return { t: "refuse", error: new ProxyError("LOOP_DETECTED", `original destination port ${dst.port} is a ztunnel port (self-loop)`) };
  return plan;
};

/**
 * A destination the store marked fail-closed (state/routing.ts: a waypoint, network gateway or
 * load-balancing mode we do not route by) is refused with its reason, never bypassed. Honouring
 * waypoints replaces this step with one that re-routes the plan through the waypoint.
 */
export const refuseUnhonouredRouting: OutboundPolicyStep = (plan, { store, dst }) => {
  // The service's own reason first: it explains a refusal better than "no healthy endpoint".
  const reason =
    store.serviceByVip(dst.ip)?.failClosed ??
    (plan.t === "refuse" ? undefined : (plan.workload?.failClosed ?? (plan.t === "passthrough" && plan.workload === undefined ? store.failClosedAt(dst.ip) : undefined)));
  return reason === undefined ? plan : { t: "refuse", error: new ProxyError("UNKNOWN_DESTINATION", reason) };
};

/**
 * Waypoints (DESIGN §13): traffic to a service with a waypoint, or to a workload with one, goes
 * over HBONE to the waypoint (its address and HBONE port, expecting its identity) with the
 * original destination as the CONNECT authority. A service's waypoint takes precedence over
 * its endpoint's. An unresolved waypoint is not routed here: the store failed it closed.
 */
export const viaWaypoint: OutboundPolicyStep = (plan, { store, dst }) => {
  if (plan.t === "refuse" || plan.workload === undefined) return plan;
  const service = store.serviceByVip(dst.ip);
  const serviceRoute = service !== undefined && service.ports[String(dst.port)] !== undefined ? service.waypointRoute : undefined;
  const route = serviceRoute ?? plan.workload.waypointRoute;
  if (route === undefined) return plan;
  const id = route.identity;
  return {
    t: "hbone",
    hboneAddress: { ip: route.ip, port: route.port },
    // The service address as dialled, or the workload endpoint as resolved.
    target: serviceRoute !== undefined ? dst : plan.target,
    identities: [makeIdentity(id.trustDomain, id.namespace, id.serviceAccount)],
    workload: plan.workload,
    service: plan.service,
  };
};

/** 127.0.0.0/8 and ::1 (canonical spellings, as the route input carries). */
function isLoopbackIp(ip: string): boolean {
  return isIP(ip) === 4 ? ip.startsWith("127.") : ip === "::1";
}

/** The policy steps, in order. */
export const OUTBOUND_POLICY: readonly OutboundPolicyStep[] = [refuseSelfLoop, refuseUnhonouredRouting, viaWaypoint];

export function routeOutbound(input: RouteInput, policy: readonly OutboundPolicyStep[] = OUTBOUND_POLICY): OutboundPlan {
  let plan = planOutbound(input.store, input.dst);
  for (const step of policy) plan = step(plan, input);
  return plan;
}
