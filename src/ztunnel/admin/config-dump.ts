import type { WorkloadSummary } from "../../zds/index.js";
import type { ZtunnelConfig } from "../config.js";
import type { PodPlacement } from "../inpod/manager.js";
import { podState } from "../inpod/pod-status.js";
import type { WorkerStatus } from "../inpod/worker-pool.js";
import type { WorkloadStore } from "../state/store.js";
import type { WorkloadCert } from "../tls/ca.js";
import type { CertManager } from "../tls/cert-manager.js";
import { X509Certificate } from "node:crypto";
import type { Direction, DirectionCounters, OpenConnection } from "../worker/messages.js";

// /config_dump: the state the proxies use, certificates (never keys), and per pod what ZDS
// and the workers know about it, including each worker's listeners.

export interface ConfigDumpSources {
  readonly config: ZtunnelConfig;
  readonly store: WorkloadStore;
  readonly certs: CertManager;
  readonly zdsConnected: boolean;
  readonly zdsWorkloads: readonly WorkloadSummary[];
  readonly pods: readonly PodPlacement[];
  readonly workers: readonly WorkerStatus[];
  readonly counters: Record<Direction, DirectionCounters>;
  /** Open connections per pod uid, over every worker. */
  readonly connections: Readonly<Record<string, readonly OpenConnection[]>>;
  readonly draining: boolean;
  /** Where the state comes from (mode, reason) and source details (istiod: xDS status, ignored fields). */
  readonly source?: Record<string, unknown>;
  /** Certificates expiring within this are flagged `expiring` (default: a quarter of 24 h). */
  readonly expiringWithinMs?: number;
}

const DEFAULT_EXPIRING_MS = 6 * 3600_000;

export function buildConfigDump(s: ConfigDumpSources): unknown {
  const pods = new Map(s.pods.map((p) => [p.uid, p]));
  const workloadState: Record<string, unknown> = {};
  for (const z of s.zdsWorkloads) {
    const p = pods.get(z.uid);
    workloadState[z.uid] = {
      state: podState(z),
      info: p === undefined ? undefined : { name: p.name, namespace: p.namespace, identity: p.identity, workload: s.store.podWorkload(z.uid, p.namespace, p.name) },
      ...(p !== undefined ? { name: p.name, namespace: p.namespace, identity: p.identity } : {}),
      lastError: z.lastError,
      listeners: p?.listeners ?? [],
      connections: s.connections[z.uid] ?? [],
    };
  }
  return {
    config: {
      inpodUds: s.config.inpodUds,
      localXdsPath: s.config.localXdsPath,
      packetMark: s.config.packetMark,
      workerThreads: s.config.workerThreads,
      clusterId: s.config.clusterId,
      nodeName: s.config.nodeName,
      trustDomain: s.config.trustDomain,
    },
    stateVersion: s.store.version,
    workloads: s.store.state.workloads,
    services: s.store.state.services,
    policies: s.store.state.policies,
    // What a source gave that is not applied as given (DESIGN §14: nothing dropped silently).
    notices: s.store.state.notices,
    // Every identity with its state (Available / Initializing / Unavailable and why), issued or not.
    certificates: s.certs.states().map(({ identity, state, error, cert: c }) => ({
      identity,
      state,
      ...(error !== undefined ? { error } : {}),
      ...(c !== undefined
        ? {
            serial: serialOf(c),
            notBefore: c.notBefore.toISOString(),
            notAfter: c.notAfter.toISOString(),
            expiring: c.notAfter.getTime() - Date.now() < (s.expiringWithinMs ?? DEFAULT_EXPIRING_MS),
            chainLength: (c.certPem.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length,
          }
        : {}),
    })),
    zds: { connected: s.zdsConnected },
    workloadState,
    workers: s.workers,
    counters: s.counters,
    draining: s.draining,
    ...(s.source !== undefined ? { source: s.source } : {}),
  };
}

// Parsed once per certificate: a dump of a node with a thousand pods must not parse them all again.
const serials = new WeakMap<WorkloadCert, string>();

function serialOf(cert: WorkloadCert): string {
  let serial = serials.get(cert);
  if (serial !== undefined) return serial;
  try {
    serial = new X509Certificate(cert.certPem).serialNumber;
  } catch {
    serial = "unparseable";
  }
  serials.set(cert, serial);
  return serial;
}
