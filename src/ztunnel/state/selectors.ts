import type { Workload } from "./types.js";

// Istio's model: the control plane resolves a policy's workload selector to the workloads it
// selects, and lists the policy in each one's `authorizationPolicies`; the engine only reads
// that list. The local file and Kubernetes mode both resolve here, against workload labels.

/** Istio's root namespace: a selector there applies in every namespace. */
export const ROOT_NAMESPACE = "istio-system";

export interface PolicySelector {
  /** `namespace/name` of the policy. */
  readonly key: string;
  readonly namespace: string;
  /** Every label listed must be on the workload with this value; empty selects every workload in scope. */
  readonly matchLabels: Readonly<Record<string, string>>;
}

export function selects(sel: PolicySelector, w: Workload, rootNamespace = ROOT_NAMESPACE): boolean {
  if (sel.namespace !== rootNamespace && sel.namespace !== w.namespace) return false;
  for (const [k, v] of Object.entries(sel.matchLabels)) if (w.labels[k] !== v) return false;
  return true;
}

/** The workloads with each selected policy added to `authorizationPolicies` (sorted, unique). */
export function resolveSelectors(workloads: readonly Workload[], selectors: readonly PolicySelector[], rootNamespace = ROOT_NAMESPACE): Workload[] {
  if (selectors.length === 0) return [...workloads];
  return workloads.map((w) => {
    const add = selectors.filter((s) => selects(s, w, rootNamespace)).map((s) => s.key);
    if (add.length === 0) return w;
    return { ...w, authorizationPolicies: [...new Set([...w.authorizationPolicies, ...add])].sort() };
  });
}
