import type { PlaintextRelayKind, RelayCounts } from "../proxy/plain-relay.js";
import type { ConnectionSummary } from "../accesslog/record.js";
import type { MetricsDelta } from "../metrics/accumulator.js";
import type { DnsMetricsDelta } from "../dns/metrics.js";
import type { DnsSettings } from "../dns/settings.js";
import type { BudgetCounters, FdBudget } from "../proxy/budget.js";
import type { StateSnapshot } from "../state/types.js";
import type { WorkloadCert } from "../tls/ca.js";
import type { Identity } from "../tls/identity.js";

// The protocol between the main thread and a proxy worker (structured clone over the worker's
// port). Netns fds travel as numbers: fds are process-wide, and each worker dup()s its own copy.

/** Settings a worker needs; everything else it receives per pod or as state snapshots. */
export interface WorkerSettings {
  readonly index: number;
  /** CLUSTER_ID: the cluster of every workload this node knows (metrics labels). */
  readonly clusterId: string;
  readonly packetMark: number;
  readonly reusePort: boolean;
  readonly ipv6: boolean;
  readonly poolMaxStreams: number;
  readonly poolIdleMs: number;
  /** ZTUNNEL_PLAINTEXT_RELAY: how passthrough and inbound plaintext copy bytes. */
  readonly plaintextRelay: PlaintextRelayKind;
  /** How often counters are flushed to the main thread (at most 1 s by DESIGN §1). */
  readonly flushIntervalMs: number;
  /** The DNS proxy on 15053 in every pod; undefined: off. */
  readonly dns?: DnsSettings;
  /** This worker's share of the process's file descriptors (proxy/budget.ts). */
  readonly fdBudget: FdBudget;
}

/** One pod as a worker proxies it. */
export interface PodSpec {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly identity: Identity;
  /** The pod's IPs: valid inbound destinations and outbound source identity. */
  readonly ips: readonly string[];
  /** The main thread's netns fd of the pod; the worker dups it and never uses this number. */
  readonly netnsFd: number;
  readonly cert: WorkloadCert;
}

export type ListenerRole = "outbound" | "inbound-plaintext" | "inbound-hbone" | "dns-udp" | "dns-tcp";

export interface ListenerInfo {
  readonly address: string;
  readonly port: number;
  readonly protocol: "TCP" | "HBONE" | "UDP";
  readonly role: ListenerRole;
  readonly worker: number;
  readonly mark: number;
}

export type ToWorker =
  | { readonly t: "state"; readonly snapshot: StateSnapshot }
  | { readonly t: "addPod"; readonly id: number; readonly pod: PodSpec }
  | { readonly t: "removePod"; readonly id: number; readonly uid: string }
  | { readonly t: "cert"; readonly cert: WorkloadCert }
  /** Stop accepting, let connections finish until the deadline, then close everything. */
  | { readonly t: "drain"; readonly id: number; readonly deadlineMs: number }
  /** POST /logging?level=: the worker's log level follows the main thread's. */
  | { readonly t: "logLevel"; readonly level: string }
  /** Open connections per pod uid (config_dump). */
  | { readonly t: "listConnections"; readonly id: number }
  /** Debug only: throw an uncaught error (proves crash replacement). */
  | { readonly t: "crash" }
  /**
   * An inbound HBONE connection worker `from` accepted for pod `uid` (worker/hbone-balance.ts);
   * `returned`: this worker's own, given back because `from` could not take it. The main thread
   * owns `fd` until this worker answers `hboneHandoffTaken` with `id` (inpod/handoffs.ts).
   */
  | { readonly t: "hboneHandoff"; readonly id: number; readonly uid: string; readonly fd: number; readonly from: number; readonly returned: boolean };

export interface DirectionCounters {
  opened: number;
  closed: number;
  failed: number;
  bytesSent: number;
  bytesReceived: number;
}

export type Direction = "outbound" | "inbound";

/** What a worker flushes to the main thread: metric deltas, finished connections, status. */
export interface Telemetry {
  readonly metrics: MetricsDelta | undefined;
  readonly access: readonly ConnectionSummary[];
  /** Connections accepted on the pods' listeners since the last flush. */
  readonly accepted: number;
  readonly active: number;
  readonly eventLoopLagMs: number;
  /** istio_dns_* counts since the last flush. */
  readonly dns?: DnsMetricsDelta;
  /** Shed connections and fd exhaustion seen since the last flush (none: undefined). */
  readonly limits?: BudgetCounters;
  /** Plaintext connections per relay since the last flush (none: undefined). */
  readonly relays?: RelayCounts;
}

/** An open connection as an operator sees it in /config_dump. */
export interface OpenConnection {
  readonly direction: Direction;
  readonly listener: ListenerRole;
  readonly src: string;
  readonly dst: string;
  readonly srcIdentity: string | undefined;
  readonly worker: number;
  readonly ageMs: number;
}

/** A worker's slot in the shared inbound HBONE load while it is not up: never the least loaded. */
export const HBONE_LOAD_NOT_UP = 1 << 29;

export type FromWorker =
  | { readonly t: "ready" }
  | { readonly t: "reply"; readonly id: number; readonly ok: true; readonly listeners: readonly ListenerInfo[] }
  | { readonly t: "reply"; readonly id: number; readonly ok: false; readonly error: string }
  /** Fd bookkeeping so the main thread can close a crashed worker's copies. */
  | { readonly t: "fdOpened"; readonly fd: number }
  | { readonly t: "fdClosed"; readonly fd: number }
  | ({ readonly t: "telemetry" } & Telemetry)
  | { readonly t: "connections"; readonly id: number; readonly connections: Readonly<Record<string, readonly OpenConnection[]>> }
  /** Give worker `to` this inbound HBONE connection of pod `uid` (a dup this worker no longer uses). */
  | { readonly t: "hboneHandoff"; readonly uid: string; readonly fd: number; readonly to: number; readonly returned: boolean }
  /** Hand-off `id` reached this worker: the fd is this worker's now (served, closed or given back). */
  | { readonly t: "hboneHandoffTaken"; readonly id: number };

export function emptyCounters(): DirectionCounters {
  return { opened: 0, closed: 0, failed: 0, bytesSent: 0, bytesReceived: 0 };
}
