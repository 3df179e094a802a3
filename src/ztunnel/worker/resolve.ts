import { ProxyError } from "../proxy/errors.js";
import type { WorkloadStore } from "../state/store.js";
import type { Workload } from "../state/types.js";
import { makeIdentity, type Identity } from "../tls/identity.js";

// Where a captured outbound connection goes (DESIGN §8): by workload IP, then by service VIP
// (a healthy endpoint); HBONE to `<pod ip>:15008` when the destination speaks HBONE, plain TCP
// passthrough otherwise (also for destinations the state does not know).

export const HBONE_PORT = 15008;

export interface Addr {
  readonly ip: string;
  readonly port: number;
}

export type OutboundPlan =
  | {
      readonly t: "hbone";
      readonly hboneAddress: Addr;
      readonly target: Addr;
      readonly identities: readonly Identity[];
      readonly workload: Workload;
      readonly service: string | undefined;
    }
  | { readonly t: "passthrough"; readonly target: Addr; readonly workload: Workload | undefined; readonly service: string | undefined }
  | { readonly t: "refuse"; readonly error: ProxyError };

/** Workload objects are replaced, never changed, by a new state: their identity is fixed. */
const identities = new WeakMap<Workload, readonly [Identity]>();

export function identityOf(w: Workload): Identity {
  return identitiesOf(w)[0];
}

/** [identityOf(w)], the same array for the same workload object (the pool keys by it). */
function identitiesOf(w: Workload): readonly [Identity] {
  let ids = identities.get(w);
  if (ids === undefined) {
    ids = Object.freeze([makeIdentity(w.trustDomain, w.namespace, w.serviceAccount)] as const);
    identities.set(w, ids);
  }
  return ids;
}

export function planOutbound(store: WorkloadStore, dst: Addr): OutboundPlan {
  const direct = store.workloadByIp(dst.ip);
  if (direct !== undefined) return toWorkload(direct, dst, undefined);
  const service = store.serviceByVip(dst.ip);
  if (service !== undefined && service.ports[String(dst.port)] !== undefined) {
    const picked = store.pickEndpoint(dst.ip, dst.port);
    if (picked === undefined) {
      return { t: "refuse", error: new ProxyError("NO_HEALTHY_UPSTREAM", `service ${service.hostname} (${dst.ip}:${dst.port}) has no healthy endpoint`) };
    }
    const ep = picked.endpoint;
    return toWorkload(ep.workload, { ip: ep.ip, port: ep.port }, service.hostname);
  }
  return { t: "passthrough", target: dst, workload: undefined, service: undefined };
}

function toWorkload(w: Workload, target: Addr, service: string | undefined): OutboundPlan {
  if (w.protocol !== "HBONE") return { t: "passthrough", target, workload: w, service };
  return { t: "hbone", hboneAddress: { ip: target.ip, port: HBONE_PORT }, target, identities: identitiesOf(w), workload: w, service };
}
