import { decidePod, DEFAULT_SELECTORS, type EnablementSelector } from "../../cni-contract/index.js";
import type { PodView } from "./model.js";

// DESIGN §6: the contract's decision (src/cni-contract, the same one the plugin makes, with the
// same selectors), plus what only the agent sees: a terminated pod.

export interface DecideOptions {
  excludeNamespaces: readonly string[];
  agentNamespace: string;
  /** The node's enablement selectors (AMBIENT_ENABLEMENT_SELECTORS); default: Istio's. */
  selectors?: readonly EnablementSelector[];
}

export type Decision = { enroll: true } | { enroll: false; reason: string };

export function decideEnrollment(pod: PodView, namespaceLabels: Record<string, string> | undefined, o: DecideOptions): Decision {
  if (pod.terminal) return { enroll: false, reason: "pod has terminated" };
  const e = decidePod(
    { namespace: pod.namespace, labels: pod.labels, annotations: pod.annotations, hostNetwork: pod.hostNetwork },
    namespaceLabels ?? {},
    { excludeNamespaces: o.excludeNamespaces, agentNamespace: o.agentNamespace, selectors: o.selectors ?? DEFAULT_SELECTORS },
  );
  return e.ambient ? { enroll: true } : { enroll: false, reason: e.reason };
}
