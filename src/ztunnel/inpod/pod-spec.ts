import type { WorkloadInfo } from "../../zds/index.js";
import type { WorkloadStore } from "../state/store.js";
import { makeIdentity, type Identity } from "../tls/identity.js";
import { PodUnknownError } from "./errors.js";

// What a pod enrolled over ZDS is, as the proxy needs it. Its identity comes from the ZDS
// WorkloadInfo (the agent's word, checked by SO_PEERCRED); its IPs and trust domain from the
// workload state (matched by uid, else by namespace/name) once the state has it.
//
// The state may not have it yet, and in istiod mode it cannot: istiod publishes a pod's
// workload only once the pod has an IP, which the kubelet reports after the CNI ADD that sends
// this Add returned. So, like Istio's ztunnel, a pod unknown to the state starts from its
// WorkloadInfo alone: identity from it and ztunnel's trust domain, no IPs (the HBONE server
// accepts no CONNECT for it until they arrive; refresh() then rebuilds its listeners). Without
// a service account there is no identity to serve: that Add fails (closed).

export interface PodIdentity {
  readonly identity: Identity;
  readonly ips: readonly string[];
  /** False when the state does not have the pod yet (identity from WorkloadInfo only). */
  readonly known: boolean;
}

/** The pod as the workload state has it (uid, else namespace/name); undefined when it has not. */
export function podFromState(store: WorkloadStore, uid: string, info: WorkloadInfo): PodIdentity | undefined {
  const workload = store.podWorkload(uid, info.namespace, info.name);
  if (workload === undefined) return undefined;
  // A known workload without IPs is accepted too: in cluster mode a new pod's Add comes before
  // the kubelet reports its IP.
  const sa = info.serviceAccount === "" ? workload.serviceAccount : info.serviceAccount;
  return { identity: makeIdentity(workload.trustDomain, info.namespace, sa), ips: workload.workloadIps, known: true };
}

/** The pod for a ZDS Add: from the state, else from its WorkloadInfo; throws when it has no identity. */
export function resolvePod(store: WorkloadStore, uid: string, info: WorkloadInfo, trustDomain: string): PodIdentity {
  const known = podFromState(store, uid, info);
  if (known !== undefined) return known;
  if (info.serviceAccount === "") throw new PodUnknownError(uid, info.namespace, info.name);
  return { identity: makeIdentity(trustDomain, info.namespace, info.serviceAccount), ips: [], known: false };
}
