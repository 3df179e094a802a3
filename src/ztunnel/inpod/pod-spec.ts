import type { WorkloadInfo } from "../../zds/index.js";
import type { WorkloadStore } from "../state/store.js";
import type { Workload } from "../state/types.js";
import { makeIdentity, type Identity } from "../tls/identity.js";
import { PodUnknownError } from "./errors.js";

// What a pod enrolled over ZDS is, as the proxy needs it: its identity comes from the ZDS
// WorkloadInfo (the agent's word, checked by SO_PEERCRED), its IPs and trust domain from the
// workload state (matched by uid, else by namespace/name).

export interface PodIdentity {
  readonly identity: Identity;
  readonly ips: readonly string[];
  readonly workload: Workload;
}

export function findWorkload(store: WorkloadStore, uid: string, info: WorkloadInfo): Workload | undefined {
  return store.podWorkload(uid, info.namespace, info.name);
}

export function resolvePod(store: WorkloadStore, uid: string, info: WorkloadInfo): PodIdentity {
  const workload = findWorkload(store, uid, info);
  // A known workload without IPs is accepted: in cluster mode a new pod's Add (from its CNI
  // ADD) comes before the kubelet reports its IP; refresh() rebuilds the listeners once the
  // IPs arrive. Until then the HBONE server accepts no CONNECT for it (no own IP to match).
  if (workload === undefined) throw new PodUnknownError(uid, info.namespace, info.name);
  const sa = info.serviceAccount === "" ? workload.serviceAccount : info.serviceAccount;
  return { identity: makeIdentity(workload.trustDomain, info.namespace, sa), ips: workload.workloadIps, workload };
}
