import type { Identity } from "../tls/identity.js";

// ztunnel's L4 Authorization model (its local config / xDS `istio.security.Authorization`),
// camelCase. The state's `Policy` (src/ztunnel/state/types.ts) is assignable to `AuthzPolicy`:
// this shape only adds the fields the state does not carry yet (dryRun, serviceAccounts,
// selector, object-form string matches).

export type AuthzScope = "Global" | "Namespace" | "WorkloadSelector";
/** "Audit" is accepted because the state accepts it; it never changes a decision. */
export type AuthzAction = "Allow" | "Deny" | "Audit";

/**
 * A string match. As a string, Istio's notation: `"*"` = present (non-empty), `"abc*"` = prefix,
 * `"*abc"` = suffix, anything else exact. As an object, ztunnel's serde form with one key.
 */
export type StringMatchSpec =
  | string
  | { readonly Exact: string }
  | { readonly Prefix: string }
  | { readonly Suffix: string }
  | { readonly Presence: unknown };

/** `{namespace, serviceAccount}` or the shorthand `"namespace/serviceAccount"`. */
export type ServiceAccountSpec = string | { readonly namespace: string; readonly serviceAccount: string };

export interface AuthzMatch {
  /** Source namespace (from the peer identity). */
  readonly namespaces?: readonly StringMatchSpec[];
  readonly notNamespaces?: readonly StringMatchSpec[];
  /** Source principal `<trust domain>/ns/<ns>/sa/<sa>` (no `spiffe://`). */
  readonly principals?: readonly StringMatchSpec[];
  readonly notPrincipals?: readonly StringMatchSpec[];
  readonly serviceAccounts?: readonly ServiceAccountSpec[];
  readonly notServiceAccounts?: readonly ServiceAccountSpec[];
  /** IP or CIDR, IPv4 or IPv6. */
  readonly sourceIps?: readonly string[];
  readonly notSourceIps?: readonly string[];
  readonly destinationIps?: readonly string[];
  readonly notDestinationIps?: readonly string[];
  readonly destinationPorts?: readonly number[];
  readonly notDestinationPorts?: readonly number[];
}

export interface WorkloadSelectorSpec {
  /** Every label listed must be present on the workload with this value. */
  readonly matchLabels: Readonly<Record<string, string>>;
}

/** rules: OR of rules; a rule: AND of clauses; a clause: OR of matches. */
export interface AuthzPolicy {
  readonly name: string;
  readonly namespace: string;
  readonly scope: AuthzScope;
  readonly action: AuthzAction;
  readonly rules: readonly (readonly (readonly AuthzMatch[])[])[];
  /** Evaluated and reported, never enforced. */
  readonly dryRun?: boolean;
  /** Only with scope WorkloadSelector: which workloads of `namespace` it applies to. */
  readonly selector?: WorkloadSelectorSpec;
}

/** The destination workload as the engine needs it (the state's `Workload` is assignable). */
export interface DestinationWorkload {
  readonly uid?: string;
  readonly namespace: string;
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * Policies that select this workload, as `namespace/name` keys (ztunnel's
   * `authorizationPolicies`, computed by the control plane). Applied whatever their selector.
   */
  readonly authorizationPolicies?: readonly string[];
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

interface DecisionBase {
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

export type AuthzDecision = (DecisionBase & { readonly allow: true }) | (DecisionBase & { readonly allow: false });
