// Whether a pod belongs in the ambient mesh (DESIGN §6), decided from labels only: pure, so
// the plugin and the agent can share it and it is tested without a cluster.
export const DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode";
export const SIDECAR_STATUS_ANNOTATION = "sidecar.istio.io/status";

export interface LabelRequirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  values: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelRequirement[];
}

/** An entry matches when every selector it names matches; an entry naming none matches nothing. */
export interface EnablementSelector {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
}

export interface PodFacts {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  hostNetwork: boolean;
}

export type Enrollment = { ambient: true } | { ambient: false; reason: string };

/** Kubernetes label-selector semantics (an empty selector matches everything). */
export function selectorMatches(sel: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
    if (labels[k] !== v) return false;
  }
  for (const req of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, req.key);
    const value = labels[req.key];
    switch (req.operator) {
      case "In":
        if (!has || !req.values.includes(value ?? "")) return false;
        break;
      case "NotIn":
        if (has && req.values.includes(value ?? "")) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
    }
  }
  return true;
}

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
