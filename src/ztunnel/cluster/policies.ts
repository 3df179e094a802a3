import { policyKey, type AuthzPolicy } from "../authz/types.js";
import { resolveSelectors, ROOT_NAMESPACE, type PolicySelector } from "../state/selectors.js";
import type { ConfigNotice, Workload } from "../state/types.js";
import { translateAuthorizationPolicy, type KubeAuthorizationPolicy } from "./authz-translate.js";
import { translatePeerAuthentications, type KubePeerAuthentication } from "./peer-authn.js";

// Kubernetes mode's policies: Istio's AuthorizationPolicy and PeerAuthentication, translated
// into the one model, with selectors resolved against pod labels into each workload's
// `authorizationPolicies` (what istiod would send).

export interface PolicyBuild {
  readonly policies: AuthzPolicy[];
  readonly workloads: Workload[];
  readonly notices: ConfigNotice[];
}

export function buildPolicies(
  aps: readonly KubeAuthorizationPolicy[],
  pas: readonly KubePeerAuthentication[],
  workloads: readonly Workload[],
  rootNamespace = ROOT_NAMESPACE,
): PolicyBuild {
  const notices: ConfigNotice[] = [];
  const policies: AuthzPolicy[] = [];
  const selectors: PolicySelector[] = [];
  for (const ap of aps) {
    const t = translateAuthorizationPolicy(ap, rootNamespace, notices);
    if (t === undefined) continue;
    policies.push(t.policy);
    if (t.selector !== undefined) selectors.push(t.selector);
  }
  let resolved = resolveSelectors(workloads, selectors, rootNamespace);
  const peer = translatePeerAuthentications(pas, resolved, rootNamespace, notices);
  if (peer.policies.length > 0) {
    policies.push(...peer.policies);
    resolved = resolved.map((w) => {
      const key = peer.byWorkload.get(w.uid);
      return key === undefined ? w : { ...w, authorizationPolicies: [...new Set([...w.authorizationPolicies, key])].sort() };
    });
  }
  policies.sort((a, b) => policyKey(a).localeCompare(policyKey(b)));
  return { policies, workloads: resolved, notices };
}
