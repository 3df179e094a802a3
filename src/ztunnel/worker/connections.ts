import type { Socket } from "node:net";
import { originalDst } from "../../native/index.js";
import { errorMessage } from "../../shared/errors.js";
import type { SocketFactory } from "../../sockets/socket-factory.js";
import type { ConnectionSummary } from "../accesslog/record.js";
import type { PolicyAuthorizer } from "../authz/authorizer.js";
import type { ConnectionMeter } from "../metrics/accumulator.js";
import type { LabelMemo } from "../metrics/label-memo.js";
import { trafficLabels, type MetricsWorkload, type ServiceDescription, type TrafficLabelInput } from "../metrics/labels.js";
import { ProxyError } from "../proxy/errors.js";
import type { HbonePool } from "../proxy/hbone-client.js";
import { LOOP_PORTS, type InboundRecord, type OpenStream } from "../proxy/hbone-server.js";
import { proxyPassthrough, type OutboundResult } from "../proxy/outbound.js";
import type { PlaintextRelayChoice } from "../proxy/plain-relay.js";
import { canonicalIp, formatHostPort } from "../state/ip.js";
import type { WorkloadStore } from "../state/store.js";
import type { Service, Workload } from "../state/types.js";
import { identityUri, type Identity } from "../tls/identity.js";
import type { ListenerRole, PodSpec } from "./messages.js";
import { HBONE_PORT } from "./resolve.js";
import type { WorkerTelemetry } from "./telemetry.js";

// What a pod's connections share on a worker (the context, metrics labels, the closing
// summary), and the inbound side: plaintext on 15006 (authorised, then to the app) and the
// HBONE server's records; what each leaves behind: destination-reporter Istio metrics and one
// access-log summary (DESIGN §9). The outbound route is outbound.ts.

/** An open connection a pod proxy keeps for config_dump and for re-checks on policy change. */
export interface TrackedConnection {
  readonly direction: "outbound" | "inbound";
  readonly listener: ListenerRole;
  readonly src: string;
  readonly dst: string;
  readonly started: number;
  /** The peer identity (undefined on plaintext and outbound). */
  readonly sourceIdentity: Identity | undefined;
  /** Inbound only: what the policy check saw, re-evaluated when policies change. */
  readonly authz?: { readonly sourceIp: string; readonly destinationIp: string; readonly destinationPort: number };
  /** Closes it now (denied after a policy change). */
  readonly close: (reason: string) => void;
}

export interface ConnectionContext {
  readonly spec: PodSpec;
  /** CLUSTER_ID (source_cluster / destination_cluster labels). */
  readonly clusterId: string;
  readonly store: WorkloadStore;
  readonly telemetry: WorkerTelemetry;
  readonly authorizer: PolicyAuthorizer;
  /** Registers an open connection; the returned function unregisters it. */
  readonly track: (c: TrackedConnection) => () => void;
  /** Undefined once the pod is being removed. */
  readonly pool: HbonePool | undefined;
  readonly factory: SocketFactory | undefined;
  /** How passthrough and inbound plaintext copy bytes, with the pod's fd budget in that direction. */
  readonly plaintextRelay: (direction: "outbound" | "inbound") => PlaintextRelayChoice;
  /** The pod's metric label values by peer, for the current state version. */
  readonly labels: LabelMemo;
}

/** A workload of the state as metrics label it: in this node's cluster. */
export function inCluster(ctx: ConnectionContext, w: Workload | undefined): MetricsWorkload | undefined {
  return w === undefined ? undefined : { ...w, cluster: ctx.clusterId };
}

/** The pod's own workload in the current state (labels for metrics). */
export function selfWorkload(ctx: ConnectionContext): Workload | undefined {
  return ctx.store.podWorkload(ctx.spec.uid, ctx.spec.namespace, ctx.spec.name);
}

export function describeService(s: Service | undefined): ServiceDescription | undefined {
  return s === undefined ? undefined : { hostname: s.hostname, name: s.name, namespace: s.namespace };
}

/** A connection accepted on 15006: authorised with no peer identity, then to the app. */
export async function handleInboundPlaintext(s: Socket, ctx: ConnectionContext): Promise<void> {
  const { telemetry, spec, store } = ctx;
  const started = Date.now();
  const client = { ip: canonicalIp(s.remoteAddress ?? "") ?? "", port: s.remotePort ?? 0 };
  telemetry.opened();
  let result: OutboundResult;
  let dst = "";
  const { factory } = ctx;
  const self = selfWorkload(ctx);
  const meter = telemetry.metrics.open(
    trafficLabels({ reporter: "destination", source: inCluster(ctx, store.workloadByIp(client.ip)), destination: inCluster(ctx, self), securityPolicy: "unknown" }),
  );
  let untrack = (): void => undefined;
  try {
    const od = originalDst(fdOf(s));
    const ip = canonicalIp(od.address) ?? od.address;
    dst = formatHostPort(ip, od.port);
    if (LOOP_PORTS.has(od.port)) throw new ProxyError("BAD_REQUEST", `port ${od.port} is a ztunnel port (loop)`);
    if (factory === undefined) throw new ProxyError("POOL_CLOSED", "pod is being removed");
    // Plaintext has no peer identity: a Deny with notPrincipals ["*"] matches it (require mTLS).
    const authz = { sourceIp: client.ip, destinationIp: ip, destinationPort: od.port };
    const decision = ctx.authorizer.check({ sourceIdentity: undefined, ...authz, ...(self !== undefined ? { destination: self } : {}) });
    if (!decision.allow) throw new ProxyError("AUTHORIZATION_DENIED", `plaintext ${formatHostPort(client.ip, client.port)} → ${dst}: ${decision.reason}`);
    untrack = ctx.track({
      direction: "inbound",
      listener: "inbound-plaintext",
      src: formatHostPort(client.ip, client.port),
      dst,
      started,
      sourceIdentity: undefined,
      authz,
      close: () => s.resetAndDestroy(),
    });
    // The app sees the original client as source: the upstream socket spoofs it (IP_TRANSPARENT).
    const spoofing: SocketFactory = {
      listenTcp: (o) => factory.listenTcp(o),
      connectTcp: (o) => factory.connectTcp({ ...o, sourceAddress: client.ip }),
    };
    result = await proxyPassthrough(s, spoofing, { ip, port: od.port }, undefined, ctx.plaintextRelay("inbound"));
  } catch (err) {
    s.resetAndDestroy();
    result = { ok: false, error: err instanceof ProxyError ? err : new ProxyError("UNKNOWN_DESTINATION", errorMessage(err)) };
  }
  untrack();
  // From the client's view: sent = toward the app (ztunnel's field meaning).
  const o = outcome(result, started);
  finish(ctx, meter, o, () => ({
    direction: "inbound",
    srcAddr: formatHostPort(client.ip, client.port),
    srcWorkload: store.workloadByIp(client.ip)?.name,
    srcNamespace: store.workloadByIp(client.ip)?.namespace,
    srcIdentity: undefined,
    dstAddr: dst,
    dstWorkload: spec.name,
    dstNamespace: spec.namespace,
    dstIdentity: spec.identity,
    ...o,
  }));
}

/** The pod IP of the same family as an authority (the address the peer dialled on 15008). */
function podIpLike(spec: PodSpec, authority: string): string {
  const v6 = authority.startsWith("[");
  return spec.ips.find((ip) => ip.includes(":") === v6) ?? spec.ips[0] ?? "";
}

/** Destination-reporter labels of an HBONE stream: the peer proven by mTLS, this pod. */
function hboneInboundLabels(ctx: ConnectionContext, sourcePrincipal: string, sourceIp: string): TrafficLabelInput {
  return {
    reporter: "destination",
    source: inCluster(ctx, ctx.store.workloadByIp(sourceIp)),
    sourcePrincipal,
    destination: inCluster(ctx, selfWorkload(ctx)),
    securityPolicy: "mutual_tls",
  };
}

/** An HBONE CONNECT was accepted and is relaying: counted as opened now. */
export function openHboneInbound(o: Pick<OpenStream, "source" | "sourceIp">, ctx: ConnectionContext): Meter {
  ctx.telemetry.opened();
  const principal = identityUri(o.source);
  const labels = ctx.labels.values(ctx.store.version, `${o.sourceIp}\0${principal}`, () => hboneInboundLabels(ctx, principal, o.sourceIp));
  return ctx.telemetry.metrics.openValues(labels);
}


/**
 * The HBONE server reports each CONNECT once it ended: destination-reporter metrics and the
 * record. `meter` is the one openHboneInbound gave for a relayed stream; refused CONNECTs
 * (400/401/503) are opened and closed here.
 */
export function recordHboneInbound(rec: InboundRecord, ctx: ConnectionContext, opened?: Meter): void {
  const { spec, store } = ctx;
  const r = rec.result;
  const sourceIp = rec.sourceIp;
  const error = rec.error ?? (rec.status !== 200 ? new ProxyError("HBONE_STATUS", `status ${rec.status}`) : r?.error);
  const meter = opened ?? openHboneInbound({ source: rec.source, sourceIp }, ctx);
  // Relay a = upstream (app), b = stream (peer): BtoA = client → app = request direction.
  const o: Outcome = {
    bytesSent: r?.bytesBtoA ?? 0,
    bytesRecv: r?.bytesAtoB ?? 0,
    durationMs: r?.durationMs ?? 0,
    error: error?.message,
    responseFlags: error instanceof ProxyError ? error.responseFlag : undefined,
  };
  finish(ctx, meter, o, () => {
    const peer = store.workloadByIp(sourceIp);
    return {
      direction: "inbound",
      srcAddr: rec.sourceAddr,
      srcWorkload: peer?.name,
      srcNamespace: peer?.namespace,
      srcIdentity: rec.source,
      dstAddr: rec.destination,
      dstHboneAddr: formatHostPort(podIpLike(spec, rec.destination), HBONE_PORT),
      dstWorkload: spec.name,
      dstNamespace: spec.namespace,
      dstIdentity: spec.identity,
      ...o,
    };
  });
}

export type Meter = ConnectionMeter;

/** How a connection ended, as its metrics and its access summary both say. */
export type Outcome = Pick<ConnectionSummary, "bytesSent" | "bytesRecv" | "durationMs" | "error" | "responseFlags" | "relay">;

/**
 * Bytes in the request (client → server) and response direction, then the close. The access
 * summary is built only when it will be logged (at the default level, only failures are).
 */
export function finish(ctx: ConnectionContext, meter: Meter, o: Outcome, summary: () => ConnectionSummary): void {
  meter.add(o.bytesSent, o.bytesRecv);
  // The summary first: the meter's close schedules the flush that carries both.
  ctx.telemetry.closedLazily(o.error !== undefined, summary);
  meter.close({ failed: o.error !== undefined, ...(o.responseFlags !== undefined ? { responseFlags: o.responseFlags } : {}) });
}

export function outcome(result: OutboundResult, started: number): Outcome {
  if (!result.ok) return { bytesSent: 0, bytesRecv: 0, durationMs: Date.now() - started, error: result.error.message, responseFlags: result.error.responseFlag };
  const r = result.result;
  return {
    bytesSent: r.bytesAtoB,
    bytesRecv: r.bytesBtoA,
    durationMs: r.durationMs,
    error: r.error?.message,
    responseFlags: r.error instanceof ProxyError ? r.error.responseFlag : undefined,
    relay: result.relay,
  };
}

/** The fd of an accepted socket (Node keeps it on the handle; needed for SO_ORIGINAL_DST). */
export function fdOf(s: Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new Error("accepted socket has no fd");
  return fd;
}
