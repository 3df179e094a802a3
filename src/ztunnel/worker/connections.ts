import type { Socket } from "node:net";
import { originalDst } from "../../native/index.js";
import { errorMessage } from "../../shared/errors.js";
import type { SocketFactory } from "../../sockets/socket-factory.js";
import { ProxyError } from "../proxy/errors.js";
import type { HbonePool } from "../proxy/hbone-client.js";
import { LOOP_PORTS, type InboundRecord } from "../proxy/hbone-server.js";
import { proxyOutboundHbone, proxyPassthrough, type OutboundResult } from "../proxy/outbound.js";
import { canonicalIp, formatHostPort } from "../state/ip.js";
import type { WorkloadStore } from "../state/store.js";
import { formatIdentity } from "../tls/identity.js";
import type { AccessRecord, PodSpec } from "./messages.js";
import { HBONE_PORT, identityOf, planOutbound, type OutboundPlan } from "./resolve.js";
import type { WorkerTelemetry } from "./telemetry.js";

// What happens to each connection a pod's listener accepts on a worker: where it goes, the
// proxy call, and the counters + access record (DESIGN §9 field names) it leaves behind.

export interface ConnectionContext {
  readonly spec: PodSpec;
  readonly store: WorkloadStore;
  readonly telemetry: WorkerTelemetry;
  /** Undefined once the pod is being removed. */
  readonly pool: HbonePool | undefined;
  readonly factory: SocketFactory | undefined;
}

/** A connection accepted on 15001: HBONE, passthrough or refused, then one access record. */
export async function handleOutbound(s: Socket, ctx: ConnectionContext): Promise<void> {
  const { telemetry, store, spec } = ctx;
  const started = Date.now();
  const client = { ip: canonicalIp(s.remoteAddress ?? "") ?? "", port: s.remotePort ?? 0 };
  telemetry.opened("outbound");
  let plan: OutboundPlan;
  let dst = "";
  try {
    const od = originalDst(fdOf(s));
    const ip = canonicalIp(od.address) ?? od.address;
    dst = formatHostPort(ip, od.port);
    plan = planOutbound(store, { ip, port: od.port });
  } catch (err) {
    plan = { t: "refuse", error: err instanceof ProxyError ? err : new ProxyError("UNKNOWN_DESTINATION", `no original destination: ${errorMessage(err)}`) };
  }
  let result: OutboundResult;
  const { pool, factory } = ctx;
  if (plan.t === "refuse" || pool === undefined || factory === undefined) {
    s.resetAndDestroy();
    result = { ok: false, error: plan.t === "refuse" ? plan.error : new ProxyError("POOL_CLOSED", "pod is being removed") };
  } else if (plan.t === "hbone") {
    result = await proxyOutboundHbone(s, pool, {
      sourcePodUid: spec.uid,
      sourceIdentity: spec.identity,
      socketFactory: factory,
      destinationIdentities: plan.identities,
      hboneAddress: plan.hboneAddress,
      target: plan.target,
      client,
      ...(plan.service !== undefined ? { serviceHost: plan.service } : {}),
    });
  } else {
    result = await proxyPassthrough(s, factory, plan.target);
  }
  const w = plan.t === "refuse" ? undefined : plan.workload;
  const rec: AccessRecord = {
    direction: "outbound",
    "src.addr": formatHostPort(client.ip, client.port),
    "src.workload": spec.name,
    "src.namespace": spec.namespace,
    "src.identity": formatIdentity(spec.identity),
    "dst.addr": plan.t === "refuse" ? dst : formatHostPort(plan.target.ip, plan.target.port),
    "dst.hbone_addr": plan.t === "hbone" ? formatHostPort(plan.hboneAddress.ip, plan.hboneAddress.port) : undefined,
    "dst.service": plan.t === "refuse" ? undefined : plan.service,
    "dst.workload": w?.name,
    "dst.namespace": w?.namespace,
    "dst.identity": plan.t === "hbone" && w !== undefined ? formatIdentity(identityOf(w)) : undefined,
    ...outcome(result, started),
  };
  const sent = result.ok ? result.result.bytesAtoB : 0;
  const recv = result.ok ? result.result.bytesBtoA : 0;
  telemetry.closed("outbound", sent, recv, !result.ok || result.result.error !== undefined, rec);
}

/** A connection accepted on 15006: to the app with the client's address as source. */
export async function handleInboundPlaintext(s: Socket, ctx: ConnectionContext): Promise<void> {
  const { telemetry, spec } = ctx;
  const started = Date.now();
  const client = { ip: canonicalIp(s.remoteAddress ?? "") ?? "", port: s.remotePort ?? 0 };
  telemetry.opened("inbound");
  let result: OutboundResult;
  let dst = "";
  const { factory } = ctx;
  try {
    const od = originalDst(fdOf(s));
    const ip = canonicalIp(od.address) ?? od.address;
    dst = formatHostPort(ip, od.port);
    if (LOOP_PORTS.has(od.port)) throw new ProxyError("BAD_REQUEST", `port ${od.port} is a ztunnel port (loop)`);
    if (factory === undefined) throw new ProxyError("POOL_CLOSED", "pod is being removed");
    // The app sees the original client as source: the upstream socket spoofs it (IP_TRANSPARENT).
    const spoofing: SocketFactory = {
      listenTcp: (o) => factory.listenTcp(o),
      connectTcp: (o) => factory.connectTcp({ ...o, sourceAddress: client.ip }),
    };
    result = await proxyPassthrough(s, spoofing, { ip, port: od.port });
  } catch (err) {
    s.resetAndDestroy();
    result = { ok: false, error: err instanceof ProxyError ? err : new ProxyError("UNKNOWN_DESTINATION", errorMessage(err)) };
  }
  const rec: AccessRecord = {
    direction: "inbound",
    "src.addr": formatHostPort(client.ip, client.port),
    "src.identity": undefined,
    "dst.addr": dst,
    "dst.workload": spec.name,
    "dst.namespace": spec.namespace,
    "dst.identity": formatIdentity(spec.identity),
    ...outcome(result, started),
  };
  // From the app's view: sent = toward the app.
  const sent = result.ok ? result.result.bytesAtoB : 0;
  const recv = result.ok ? result.result.bytesBtoA : 0;
  telemetry.closed("inbound", sent, recv, !result.ok || result.result.error !== undefined, rec);
}

/** The pod IP of the same family as an authority (the address the peer dialled on 15008). */
function podIpLike(spec: PodSpec, authority: string): string {
  const v6 = authority.startsWith("[");
  return spec.ips.find((ip) => ip.includes(":") === v6) ?? spec.ips[0] ?? "";
}

/** The HBONE server reports each CONNECT once it ended: count it and write its record. */
export function recordHboneInbound(rec: InboundRecord, spec: PodSpec, telemetry: WorkerTelemetry): void {
  telemetry.opened("inbound");
  const r = rec.result;
  // Relay a = upstream (app), b = stream (peer): AtoB = app → peer.
  const access: AccessRecord = {
    direction: "inbound",
    "src.addr": rec.sourceAddr,
    "src.identity": formatIdentity(rec.source),
    "dst.addr": rec.destination,
    "dst.hbone_addr": formatHostPort(podIpLike(spec, rec.destination), HBONE_PORT),
    "dst.workload": spec.name,
    "dst.namespace": spec.namespace,
    "dst.identity": formatIdentity(spec.identity),
    bytes_sent: r?.bytesBtoA ?? 0,
    bytes_recv: r?.bytesAtoB ?? 0,
    duration: r?.durationMs ?? 0,
    error: rec.error?.message ?? (rec.status !== 200 ? `status ${rec.status}` : r?.error?.message),
  };
  telemetry.closed("inbound", r?.bytesBtoA ?? 0, r?.bytesAtoB ?? 0, rec.status !== 200 || r?.error !== undefined, access);
}

function outcome(result: OutboundResult, started: number): AccessRecord {
  if (!result.ok) return { bytes_sent: 0, bytes_recv: 0, duration: Date.now() - started, error: result.error.message, response_flags: result.error.responseFlag };
  const r = result.result;
  return { bytes_sent: r.bytesAtoB, bytes_recv: r.bytesBtoA, duration: r.durationMs, error: r.error?.message };
}

/** The fd of an accepted socket (Node keeps it on the handle; needed for SO_ORIGINAL_DST). */
function fdOf(s: Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new Error("accepted socket has no fd");
  return fd;
}
