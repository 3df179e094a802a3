import { DEFAULT_SELECTORS } from "../../../cni-plugin/config.js";
import { podEnrollment, type EnablementSelector } from "../../../cni-plugin/enrollment.js";
import type { PodView } from "./model.js";

// DESIGN §6, the same pure rules the plugin applies, plus the agent-only ones: excluded
// namespaces, the agent's own namespace and terminal pods.

export interface DecideOptions {
  excludeNamespaces: readonly string[];
  agentNamespace: string;
  selectors?: readonly EnablementSelector[];
}

export type Decision = { enroll: true } | { enroll: false; reason: string };

export function decideEnrollment(pod: PodView, namespaceLabels: Record<string, string> | undefined, o: DecideOptions): Decision {
  if (pod.terminal) return { enroll: false, reason: "pod has terminated" };
  if (o.excludeNamespaces.includes(pod.namespace)) return { enroll: false, reason: `namespace ${pod.namespace} is excluded` };
  if (pod.namespace === o.agentNamespace) return { enroll: false, reason: "pod runs in the agent's own namespace" };
  const e = podEnrollment(
    { labels: pod.labels, annotations: pod.annotations, hostNetwork: pod.hostNetwork },
    namespaceLabels ?? {},
    o.selectors ?? DEFAULT_SELECTORS,
  );
  return e.ambient ? { enroll: true } : { enroll: false, reason: e.reason };
}
