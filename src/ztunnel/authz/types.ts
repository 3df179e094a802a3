import type { Identity } from "../tls/identity.js";

// The one policy model (DESIGN §14), shaped like istiod's `istio.security.Authorization`
// (§13) in camelCase. Every source produces it — the local file (validate.ts), Kubernetes mode
// (cluster/authz-translate.ts), istiod's xDS — already validated and normalised; workers
// compile it (compile.ts) and evaluate it (engine.ts). Plain data: it crosses to worker
// threads by structured clone.

export type AuthzScope = "Global" | "Namespace" | "WorkloadSelector";
/** Istio's Authorization has only these two; AUDIT and CUSTOM are handled by the sources. */
export type AuthzAction = "Allow" | "Deny";

export type StringMatchKind = "exact" | "prefix" | "suffix" | "presence";

/** istio.security.StringMatch: exact, prefix, suffix, or presence (any non-empty value). */
export interface StringMatch {
  readonly kind: StringMatchKind;
  /** "" for presence. */
  readonly value: string;
}

export interface ServiceAccountMatch {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/**
 * istio.security.Match. Within a field any value matches (OR); all present fields must match
 * (AND); a `not…` field matches when none of its values does. IPs are canonical CIDR text.
 */
export interface AuthzMatch {
  /** Source namespace (from the peer identity). */
  readonly namespaces?: readonly StringMatch[];
  readonly notNamespaces?: readonly StringMatch[];
  /** Source principal `<trust domain>/ns/<ns>/sa/<sa>` (no `spiffe://`). */
  readonly principals?: readonly StringMatch[];
  readonly notPrincipals?: readonly StringMatch[];
  readonly serviceAccounts?: readonly ServiceAccountMatch[];
  readonly notServiceAccounts?: readonly ServiceAccountMatch[];
  readonly sourceIps?: readonly string[];
  readonly notSourceIps?: readonly string[];
  readonly destinationIps?: readonly string[];
  readonly notDestinationIps?: readonly string[];
  readonly destinationPorts?: readonly number[];
  readonly notDestinationPorts?: readonly number[];
}

/** One clause: any of its matches (an empty clause matches everything). */
export type AuthzClause = readonly AuthzMatch[];
/** One rule: all of its clauses (a rule with no clauses matches everything). */
export type AuthzRule = readonly AuthzClause[];

/**
 * rules: OR of rules. A policy without rules matches nothing (an ALLOW policy without rules
 * therefore denies everything it applies to).
 */
export interface AuthzPolicy {
  readonly name: string;
  readonly namespace: string;
  /**
   * Global: every workload. Namespace: every workload of `namespace`. WorkloadSelector: exactly
   * the workloads whose `authorizationPolicies` name `namespace/name` (sources resolve
   * selectors to that list).
   */
  readonly scope: AuthzScope;
  readonly action: AuthzAction;
  readonly rules: readonly AuthzRule[];
  /** Evaluated and reported, never enforced. */
  readonly dryRun: boolean;
}

export function policyKey(p: { readonly namespace: string; readonly name: string }): string {
  return `${p.namespace}/${p.name}`;
}

/** The destination workload as the engine needs it (the state's `Workload` is assignable). */
export interface DestinationWorkload {
  readonly namespace: string;
  /** Policies that select this workload, as `namespace/name` keys. */
  readonly authorizationPolicies: readonly string[];
  /**
   * Set when the workload must not receive traffic at all (a routing field we do not honour,
   * see state/routing.ts): every connection to it is denied with this reason.
   */
  readonly failClosed?: string | undefined;
  /** Its waypoint (state/waypoints.ts): inbound traffic must come from it. */
  readonly waypointRoute?: { readonly identity: { readonly trustDomain: string; readonly namespace: string; readonly serviceAccount: string } } | undefined;
}

/** One connection to authorize. */
export interface ConnectionInfo {
  /** The mTLS peer; undefined on plaintext (15006). */
  readonly sourceIdentity: Identity | undefined;
  readonly sourceIp: string;
  readonly destinationIp: string;
  readonly destinationPort: number;
  readonly destination: DestinationWorkload;
}

/** The one decision type: the HBONE server, plaintext inbound and re-checks all use it. */
export interface AuthzDecision {
  readonly allow: boolean;
  /** `namespace/name` of the deciding policy; undefined when no single policy decided. */
  readonly policy: string | undefined;
  /** Why, for the 401 body and logs. */
  readonly reason: string;
  /**
   * Present only when dry-run policies apply: the decision had they been enforced together with
   * the enforced ones. Never acted on.
   */
  readonly dryRun?: AuthzDecision;
}
