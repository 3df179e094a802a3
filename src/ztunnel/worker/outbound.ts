import type { Socket } from "node:net";
import { originalDst } from "../../native/index.js";
import { errorMessage } from "../../shared/errors.js";
import type { ConnectionSummary } from "../accesslog/record.js";
import { ProxyError } from "../proxy/errors.js";
import { proxyOutboundHbone, proxyPassthrough, type OutboundResult } from "../proxy/outbound.js";
import { canonicalIp, formatHostPort } from "../state/ip.js";
import { identityUri } from "../tls/identity.js";
import type { Service, Workload } from "../state/types.js";
import { describeService, fdOf, finish, inCluster, outcome, selfWorkload, type ConnectionContext, type Outcome } from "./connections.js";
import { routeOutbound } from "./outbound-route.js";
import { identityOf, type Addr, type OutboundPlan } from "./resolve.js";

// A connection accepted on a pod's 15001, start to end, in the order things happen:
//   original destination (SO_ORIGINAL_DST) → route (resolve, policy) → HBONE or passthrough
// and what it leaves behind: source-reporter metrics and one access-log summary (DESIGN §8, §9).

interface Routed {
  /** The original destination as the client dialled it ("" when it could not be read). */
  readonly dst: string;
  readonly plan: OutboundPlan;
  /** The service whose VIP the client dialled, if any. */
  readonly service: Service | undefined;
}

export async function handleOutbound(s: Socket, ctx: ConnectionContext): Promise<void> {
  const started = Date.now();
  const client = { ip: canonicalIp(s.remoteAddress ?? "") ?? "", port: s.remotePort ?? 0 };
  ctx.telemetry.opened();
  const routed = route(s, ctx);
  const w = workloadOf(routed.plan);
  const svc = routed.service;
  const security = routed.plan.t === "hbone" ? "mutual_tls" : "unknown";
  const labels = ctx.labels.values(ctx.store.version, `${w?.uid ?? ""}\0${svc === undefined ? "" : `${svc.namespace}/${svc.name}/${svc.hostname}`}\0${security}`, () => ({
    reporter: "source",
    source: inCluster(ctx, selfWorkload(ctx)),
    sourcePrincipal: identityUri(ctx.spec.identity),
    destination: inCluster(ctx, w),
    destinationService: describeService(svc),
    securityPolicy: security,
  }));
  const meter = ctx.telemetry.metrics.openValues(labels);
  const untrack = ctx.track({
    direction: "outbound",
    listener: "outbound",
    src: formatHostPort(client.ip, client.port),
    dst: routed.dst,
    started,
    sourceIdentity: undefined,
    close: () => s.resetAndDestroy(),
  });
  const result = await forward(s, routed.plan, client, ctx);
  untrack();
  const o = outcome(result, started);
  finish(ctx, meter, o, () => summarize(ctx, routed, client, o));
}

/** Original destination, then the route; any failure to read it refuses the connection. */
function route(s: Socket, ctx: ConnectionContext): Routed {
  let dst = "";
  try {
    const od = originalDst(fdOf(s));
    const target: Addr = { ip: canonicalIp(od.address) ?? od.address, port: od.port };
    dst = formatHostPort(target.ip, target.port);
    return { dst, plan: routeOutbound({ store: ctx.store, dst: target }), service: ctx.store.serviceByVip(target.ip) };
  } catch (err) {
    const error = err instanceof ProxyError ? err : new ProxyError("UNKNOWN_DESTINATION", `no original destination: ${errorMessage(err)}`);
    return { dst, plan: { t: "refuse", error }, service: undefined };
  }
}

/** HBONE or passthrough per the plan; a refusal or a pod being removed resets the client. */
async function forward(s: Socket, plan: OutboundPlan, client: Addr, ctx: ConnectionContext): Promise<OutboundResult> {
  const { pool, factory, spec } = ctx;
  if (plan.t === "refuse" || pool === undefined || factory === undefined) {
    s.resetAndDestroy();
    return { ok: false, error: plan.t === "refuse" ? plan.error : new ProxyError("POOL_CLOSED", "pod is being removed") };
  }
  if (plan.t === "passthrough") return proxyPassthrough(s, factory, plan.target, undefined, ctx.plaintextRelay("outbound"));
  return proxyOutboundHbone(s, pool, {
    sourcePodUid: spec.uid,
    sourceIdentity: spec.identity,
    socketFactory: factory,
    destinationIdentities: plan.identities,
    hboneAddress: plan.hboneAddress,
    target: plan.target,
    client,
    ...(plan.service !== undefined ? { serviceHost: plan.service } : {}),
  });
}

function workloadOf(plan: OutboundPlan): Workload | undefined {
  return plan.t === "refuse" ? undefined : plan.workload;
}

function summarize(ctx: ConnectionContext, routed: Routed, client: Addr, o: Outcome): ConnectionSummary {
  const { plan } = routed;
  const { spec } = ctx;
  const w = workloadOf(plan);
  return {
    direction: "outbound",
    srcAddr: formatHostPort(client.ip, client.port),
    srcWorkload: spec.name,
    srcNamespace: spec.namespace,
    srcIdentity: spec.identity,
    dstAddr: plan.t === "refuse" ? routed.dst : formatHostPort(plan.target.ip, plan.target.port),
    dstHboneAddr: plan.t === "hbone" ? formatHostPort(plan.hboneAddress.ip, plan.hboneAddress.port) : undefined,
    dstService: plan.t === "refuse" ? routed.service?.hostname : plan.service,
    dstWorkload: w?.name,
    dstNamespace: w?.namespace,
    dstIdentity: plan.t === "hbone" && w !== undefined ? identityOf(w) : undefined,
    ...o,
  };
}
