import type { V1Service } from "@kubernetes/client-node";
import type { ConfigNotice } from "../state/types.js";

// Service fields that change how kube-proxy would pick endpoints, which this ztunnel does not
// do, reported rather than silently ignored (DESIGN §14). internalTrafficPolicy: Local (only
// endpoints on the client's node) changes where traffic may go: the service fails closed
// (see model.ts, `loadBalancerMode`), the others are reported as not enforced.

export function serviceNotices(svc: V1Service): ConfigNotice[] {
  const spec = svc.spec;
  const object = `service ${svc.metadata?.namespace ?? ""}/${svc.metadata?.name ?? ""}`;
  const out: ConfigNotice[] = [];
  if (spec?.type === "ExternalName") {
    out.push({ object, field: "spec.type", effect: "not-enforced", reason: "an ExternalName service has no VIP or endpoints: connections to its name resolve and pass through as to any external host" });
  }
  if (spec?.sessionAffinity === "ClientIP") {
    out.push({ object, field: "spec.sessionAffinity", effect: "not-enforced", reason: "session affinity is not implemented: each connection picks a healthy endpoint uniformly" });
  }
  return out;
}

/** internalTrafficPolicy Local: endpoints on the client's node only — not implemented, so the service fails closed. */
export function nodeLocalOnly(svc: V1Service): boolean {
  return svc.spec?.internalTrafficPolicy === "Local";
}
