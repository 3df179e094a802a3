import { parseCidr, type Cidr } from "./cidr.js";
import { AuthzPolicyError } from "./errors.js";
import type { StringMatcher } from "./string-match.js";
import { policyKey, type AuthzAction, type AuthzDecision, type AuthzMatch, type AuthzPolicy, type AuthzScope, type ServiceAccountMatch } from "./types.js";

// The model (already validated where it entered) → what the engine evaluates, once per worker
// per policy set: parsed CIDRs, and the decision objects precomputed so evaluation allocates
// nothing. Typed input only; nothing here re-validates.

/** Absent lists are undefined, so evaluation skips them with one check. */
export interface CompiledMatch {
  readonly namespaces: readonly StringMatcher[] | undefined;
  readonly notNamespaces: readonly StringMatcher[] | undefined;
  readonly principals: readonly StringMatcher[] | undefined;
  readonly notPrincipals: readonly StringMatcher[] | undefined;
  readonly serviceAccounts: readonly ServiceAccountMatch[] | undefined;
  readonly notServiceAccounts: readonly ServiceAccountMatch[] | undefined;
  readonly sourceIps: readonly Cidr[] | undefined;
  readonly notSourceIps: readonly Cidr[] | undefined;
  readonly destinationIps: readonly Cidr[] | undefined;
  readonly notDestinationIps: readonly Cidr[] | undefined;
  readonly destinationPorts: readonly number[] | undefined;
  readonly notDestinationPorts: readonly number[] | undefined;
  /** ztunnel skips an empty match: it never matches. */
  readonly empty: boolean;
}

export interface CompiledPolicy {
  /** `namespace/name`. */
  readonly key: string;
  readonly namespace: string;
  readonly scope: AuthzScope;
  readonly action: AuthzAction;
  readonly dryRun: boolean;
  readonly rules: readonly (readonly (readonly CompiledMatch[])[])[];
  /** What this policy decides when it matches (precomputed). */
  readonly decision: AuthzDecision;
  readonly source: AuthzPolicy;
}

export function compilePolicies(policies: readonly AuthzPolicy[]): CompiledPolicy[] {
  return policies.map(compilePolicy);
}

export function compilePolicy(p: AuthzPolicy): CompiledPolicy {
  const key = policyKey(p);
  const decision: AuthzDecision =
    p.action === "Deny" ? { allow: false, policy: key, reason: `explicitly denied by policy ${key}` } : { allow: true, policy: key, reason: `allowed by policy ${key}` };
  return {
    key,
    namespace: p.namespace,
    scope: p.scope,
    action: p.action,
    dryRun: p.dryRun,
    rules: p.rules.map((rule) => rule.map((clause) => clause.map(compileMatch))),
    decision,
    source: p,
  };
}

function compileMatch(m: AuthzMatch): CompiledMatch {
  const cidrs = (l: readonly string[] | undefined): Cidr[] | undefined => (l === undefined || l.length === 0 ? undefined : l.map(toCidr));
  const some = <T>(l: readonly T[] | undefined): readonly T[] | undefined => (l === undefined || l.length === 0 ? undefined : l);
  const out = {
    namespaces: some(m.namespaces),
    notNamespaces: some(m.notNamespaces),
    principals: some(m.principals),
    notPrincipals: some(m.notPrincipals),
    serviceAccounts: some(m.serviceAccounts),
    notServiceAccounts: some(m.notServiceAccounts),
    sourceIps: cidrs(m.sourceIps),
    notSourceIps: cidrs(m.notSourceIps),
    destinationIps: cidrs(m.destinationIps),
    notDestinationIps: cidrs(m.notDestinationIps),
    destinationPorts: some(m.destinationPorts),
    notDestinationPorts: some(m.notDestinationPorts),
  };
  // `out` holds exactly the match fields, each undefined when absent or empty.
  return { ...out, empty: Object.values(out).every((v) => v === undefined) };
}

// The model holds validated CIDR text; one that does not parse is a source's bug: the caller
// (PolicyAuthorizer) then denies everything until the policies are fixed.
function toCidr(text: string): Cidr {
  const c = parseCidr(text);
  if (typeof c === "string") throw new AuthzPolicyError("(compiled policy)", `${c} (a policy source produced an invalid CIDR)`);
  return c;
}
