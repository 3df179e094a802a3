import { isIP } from "node:net";
import { ProxyError } from "../proxy/errors.js";
import type { WorkloadStore } from "../state/store.js";
import { planOutbound, type Addr, type OutboundPlan } from "./resolve.js";

// Where a captured outbound connection goes, as one path (DESIGN §8):
//   original destination → resolve (workload IP, then service VIP) → policy steps → a plan:
//   HBONE to `<pod ip>:15008`, plain passthrough, or refuse.
// The policy steps see the resolved plan and may refuse or re-route it; a new rule (e.g. a
// waypoint) is one more entry in OUTBOUND_POLICY.

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
  const reason = store.serviceByVip(dst.ip)?.failClosed ?? (plan.t === "refuse" ? undefined : plan.workload?.failClosed);
  return reason === undefined ? plan : { t: "refuse", error: new ProxyError("UNKNOWN_DESTINATION", reason) };
};

/** 127.0.0.0/8 and ::1 (canonical spellings, as the route input carries). */
function isLoopbackIp(ip: string): boolean {
  return isIP(ip) === 4 ? ip.startsWith("127.") : ip === "::1";
}

/** The policy steps, in order. */
export const OUTBOUND_POLICY: readonly OutboundPolicyStep[] = [refuseSelfLoop, refuseUnhonouredRouting];

export function routeOutbound(input: RouteInput, policy: readonly OutboundPolicyStep[] = OUTBOUND_POLICY): OutboundPlan {
  let plan = planOutbound(input.store, input.dst);
  for (const step of policy) plan = step(plan, input);
  return plan;
}
