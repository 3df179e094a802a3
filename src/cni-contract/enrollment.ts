import { selectorMatches, type EnablementSelector } from "./selectors.js";

// Whether a pod belongs in the ambient mesh (DESIGN §6), decided from labels only: pure, so
// the plugin and the agent share it and it is tested without a cluster.
export const DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode";
export const SIDECAR_STATUS_ANNOTATION = "sidecar.istio.io/status";

export interface PodFacts {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  hostNetwork: boolean;
}

export type Enrollment = { ambient: true } | { ambient: false; reason: string };

export function podEnrollment(
  pod: PodFacts,
  namespaceLabels: Record<string, string>,
  selectors: readonly EnablementSelector[],
): Enrollment {
  if (pod.hostNetwork) return { ambient: false, reason: "hostNetwork pod" };
  if (pod.annotations[SIDECAR_STATUS_ANNOTATION] !== undefined) return { ambient: false, reason: "pod has a sidecar" };
  if (pod.labels[DATAPLANE_MODE_LABEL] === "none") return { ambient: false, reason: `pod label ${DATAPLANE_MODE_LABEL}=none` };
  for (const s of selectors) {
    if (s.podSelector === undefined && s.namespaceSelector === undefined) continue;
    if (s.podSelector !== undefined && !selectorMatches(s.podSelector, pod.labels)) continue;
    if (s.namespaceSelector !== undefined && !selectorMatches(s.namespaceSelector, namespaceLabels)) continue;
    return { ambient: true };
  }
  return { ambient: false, reason: "no enablement selector matches the pod or its namespace" };
}

/** What decides enrollment on a node: the selectors plus the namespaces that never enroll. */
export interface EnrollmentPolicy {
  readonly excludeNamespaces: readonly string[];
  /** The agent's own namespace ("" = none named): its pods are never enrolled. */
  readonly agentNamespace: string;
  readonly selectors: readonly EnablementSelector[];
}

/** Why a namespace never enrolls, or undefined when its pods go by the selectors. */
export function namespaceExclusion(namespace: string, policy: Pick<EnrollmentPolicy, "excludeNamespaces" | "agentNamespace">): string | undefined {
  if (policy.excludeNamespaces.includes(namespace)) return `namespace "${namespace}" is excluded`;
  if (policy.agentNamespace !== "" && namespace === policy.agentNamespace) return `namespace "${namespace}" is the agent's own`;
  return undefined;
}

/** The whole decision for one pod, as both the plugin and the agent make it. */
export function decidePod(pod: PodFacts & { namespace: string }, namespaceLabels: Record<string, string>, policy: EnrollmentPolicy): Enrollment {
  const excluded = namespaceExclusion(pod.namespace, policy);
  if (excluded !== undefined) return { ambient: false, reason: excluded };
  return podEnrollment(pod, namespaceLabels, policy.selectors);
}
