import { parseCidr, type Cidr } from "./cidr.js";
import { AuthzPolicyError } from "./errors.js";
import { compileStringMatch, describe, type StringMatcher } from "./string-match.js";
import type { AuthzAction, AuthzDecision, AuthzMatch, AuthzPolicy, AuthzScope, ServiceAccountSpec, StringMatchSpec } from "./types.js";
import { closest } from "../../shared/did-you-mean.js";

// Strict validation and compilation in one pass: input is treated as untrusted (it may come
// straight from YAML), unknown keys are rejected with a hint, and every error names the field
// path. The output is what the engine evaluates: parsed CIDRs, compiled string matchers, and
// the decision objects precomputed so evaluation allocates nothing.

export interface ServiceAccountMatcher {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** Absent lists are undefined, so evaluation skips them with one check. */
export interface CompiledMatch {
  readonly namespaces: readonly StringMatcher[] | undefined;
  readonly notNamespaces: readonly StringMatcher[] | undefined;
  readonly principals: readonly StringMatcher[] | undefined;
  readonly notPrincipals: readonly StringMatcher[] | undefined;
  readonly serviceAccounts: readonly ServiceAccountMatcher[] | undefined;
  readonly notServiceAccounts: readonly ServiceAccountMatcher[] | undefined;
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
  readonly name: string;
  readonly namespace: string;
  readonly scope: AuthzScope;
  readonly action: AuthzAction;
  readonly dryRun: boolean;
  /** WorkloadSelector only: label pairs that must all be present; undefined = no selector. */
  readonly selector: readonly (readonly [string, string])[] | undefined;
  readonly rules: readonly (readonly (readonly CompiledMatch[])[])[];
  /** What this policy decides when it matches (precomputed). */
  readonly decision: AuthzDecision;
  /** The normalised policy (defaults filled in), for dumps and re-validation. */
  readonly source: AuthzPolicy;
}

const POLICY_KEYS = ["name", "namespace", "scope", "action", "rules", "dryRun", "selector"] as const;
const STRING_KEYS = ["namespaces", "notNamespaces", "principals", "notPrincipals"] as const;
const SA_KEYS = ["serviceAccounts", "notServiceAccounts"] as const;
const IP_KEYS = ["sourceIps", "notSourceIps", "destinationIps", "notDestinationIps"] as const;
const PORT_KEYS = ["destinationPorts", "notDestinationPorts"] as const;
const MATCH_KEYS = [...STRING_KEYS, ...SA_KEYS, ...IP_KEYS, ...PORT_KEYS] as const;
const SCOPES: readonly AuthzScope[] = ["Global", "Namespace", "WorkloadSelector"];
const ACTIONS: readonly AuthzAction[] = ["Allow", "Deny", "Audit"];

/** Validates and compiles a list of policies; `at` is the path of the list in the config. */
export function compilePolicies(raw: unknown, at = "policies"): CompiledPolicy[] {
  if (raw === undefined || raw === null) return [];
  const items = list(raw, at);
  const out = items.map((p, i) => compilePolicy(p, `${at}[${i}]`));
  const seen = new Map<string, number>();
  out.forEach((p, i) => {
    const first = seen.get(p.key);
    if (first !== undefined) throw new AuthzPolicyError(`${at}[${i}].name`, `duplicate policy "${p.key}" (also ${at}[${first}])`);
    seen.set(p.key, i);
  });
  return out;
}

/** Strict validation only: the normalised policies, or an AuthzPolicyError naming the field. */
export function validatePolicies(raw: unknown, at = "policies"): AuthzPolicy[] {
  return compilePolicies(raw, at).map((p) => p.source);
}

export function compilePolicy(raw: unknown, at: string): CompiledPolicy {
  const o = object(raw, at);
  checkKeys(o, at, POLICY_KEYS);
  const name = nonEmpty(o.name, `${at}.name`);
  const namespace = nonEmpty(o.namespace, `${at}.namespace`);
  const scope = oneOf(o.scope ?? "Namespace", `${at}.scope`, SCOPES);
  const action = oneOf(o.action ?? "Allow", `${at}.action`, ACTIONS);
  if (o.dryRun !== undefined && typeof o.dryRun !== "boolean") throw new AuthzPolicyError(`${at}.dryRun`, `expected true or false, got ${describe(o.dryRun)}`);
  const dryRun = o.dryRun === true;
  let selector: [string, string][] | undefined;
  let selectorSpec: AuthzPolicy["selector"];
  if (o.selector !== undefined) {
    if (scope !== "WorkloadSelector") throw new AuthzPolicyError(`${at}.selector`, `only allowed with scope WorkloadSelector (scope is ${scope})`);
    const sel = object(o.selector, `${at}.selector`);
    checkKeys(sel, `${at}.selector`, ["matchLabels"]);
    const labels = object(sel.matchLabels ?? {}, `${at}.selector.matchLabels`);
    selector = Object.entries(labels).map(([k, v]) => {
      if (k === "") throw new AuthzPolicyError(`${at}.selector.matchLabels`, "label names must not be empty");
      if (typeof v !== "string") throw new AuthzPolicyError(`${at}.selector.matchLabels.${k}`, `expected a string, got ${describe(v)}`);
      return [k, v];
    });
    selectorSpec = { matchLabels: Object.fromEntries(selector) };
  }
  const rulesSrc: AuthzMatch[][][] = [];
  const rules = list(o.rules, `${at}.rules`).map((rule, i) => {
    const ruleSrc: AuthzMatch[][] = [];
    rulesSrc.push(ruleSrc);
    return list(rule, `${at}.rules[${i}]`).map((clause, j) => {
      const clauseSrc: AuthzMatch[] = [];
      ruleSrc.push(clauseSrc);
      return list(clause, `${at}.rules[${i}][${j}]`).map((m, k) => {
        const [compiled, src] = compileMatch(m, `${at}.rules[${i}][${j}][${k}]`);
        clauseSrc.push(src);
        return compiled;
      });
    });
  });
  const key = `${namespace}/${name}`;
  const decision: AuthzDecision =
    action === "Deny"
      ? { allow: false, policy: key, reason: `explicitly denied by policy ${key}` }
      : { allow: true, policy: key, reason: `allowed by policy ${key}` };
  const source: AuthzPolicy = {
    name,
    namespace,
    scope,
    action,
    rules: rulesSrc,
    ...(dryRun ? { dryRun } : {}),
    ...(selectorSpec !== undefined ? { selector: selectorSpec } : {}),
  };
  return { key, name, namespace, scope, action, dryRun, selector, rules, decision, source };
}

function compileMatch(raw: unknown, at: string): [CompiledMatch, AuthzMatch] {
  const o = object(raw, at);
  checkKeys(o, at, MATCH_KEYS);
  const src: Record<string, unknown[]> = {};
  const strings = (k: (typeof STRING_KEYS)[number]): StringMatcher[] | undefined => {
    const items = optionalList(o[k], `${at}.${k}`);
    if (items === undefined) return undefined;
    src[k] = items as StringMatchSpec[];
    return items.map((s, i) => {
      const p = `${at}.${k}[${i}]`;
      if (k.toLowerCase().endsWith("principals") && typeof s === "string" && s.startsWith("spiffe://")) {
        throw new AuthzPolicyError(p, `write principals without "spiffe://" ("${s.slice("spiffe://".length)}"); ztunnel compares the part after it`);
      }
      const m = compileStringMatch(s);
      if (typeof m === "string") throw new AuthzPolicyError(p, m);
      return m;
    });
  };
  const accounts = (k: (typeof SA_KEYS)[number]): ServiceAccountMatcher[] | undefined => {
    const items = optionalList(o[k], `${at}.${k}`);
    if (items === undefined) return undefined;
    const out = items.map((s, i) => serviceAccount(s, `${at}.${k}[${i}]`));
    src[k] = out.map((a): ServiceAccountSpec => ({ namespace: a.namespace, serviceAccount: a.serviceAccount }));
    return out;
  };
  const cidrs = (k: (typeof IP_KEYS)[number]): Cidr[] | undefined => {
    const items = optionalList(o[k], `${at}.${k}`);
    if (items === undefined) return undefined;
    const out = items.map((s, i) => {
      const p = `${at}.${k}[${i}]`;
      if (typeof s !== "string") throw new AuthzPolicyError(p, `expected an IP or CIDR string, got ${describe(s)}`);
      const c = parseCidr(s);
      if (typeof c === "string") throw new AuthzPolicyError(p, c);
      return c;
    });
    src[k] = out.map((c) => c.text);
    return out;
  };
  const ports = (k: (typeof PORT_KEYS)[number]): number[] | undefined => {
    const items = optionalList(o[k], `${at}.${k}`);
    if (items === undefined) return undefined;
    const out = items.map((v, i) => port(v, `${at}.${k}[${i}]`));
    src[k] = out;
    return out;
  };
  const m: CompiledMatch = {
    namespaces: strings("namespaces"),
    notNamespaces: strings("notNamespaces"),
    principals: strings("principals"),
    notPrincipals: strings("notPrincipals"),
    serviceAccounts: accounts("serviceAccounts"),
    notServiceAccounts: accounts("notServiceAccounts"),
    sourceIps: cidrs("sourceIps"),
    notSourceIps: cidrs("notSourceIps"),
    destinationIps: cidrs("destinationIps"),
    notDestinationIps: cidrs("notDestinationIps"),
    destinationPorts: ports("destinationPorts"),
    notDestinationPorts: ports("notDestinationPorts"),
    empty: false,
  };
  const empty = MATCH_KEYS.every((k) => m[k] === undefined);
  return [{ ...m, empty }, src as AuthzMatch];
}

function serviceAccount(v: unknown, at: string): ServiceAccountMatcher {
  if (typeof v === "string") {
    const parts = v.split("/");
    if (parts.length !== 2 || parts[0] === "" || parts[1] === "") throw new AuthzPolicyError(at, `"${v}" is not "namespace/serviceAccount"`);
    return { namespace: parts[0] ?? "", serviceAccount: parts[1] ?? "" };
  }
  const o = object(v, at);
  checkKeys(o, at, ["namespace", "serviceAccount"]);
  return { namespace: nonEmpty(o.namespace, `${at}.namespace`), serviceAccount: nonEmpty(o.serviceAccount, `${at}.serviceAccount`) };
}

// ---- primitives --------------------------------------------------------------------------

type Obj = Record<string, unknown>;

function object(v: unknown, at: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new AuthzPolicyError(at, `expected a mapping, got ${describe(v)}`);
  return v as Obj;
}

function list(v: unknown, at: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new AuthzPolicyError(at, `expected a list, got ${describe(v)}`);
  return v;
}

/** Undefined for an absent or empty list: both mean "no condition" in ztunnel. */
function optionalList(v: unknown, at: string): unknown[] | undefined {
  const l = list(v, at);
  return l.length === 0 ? undefined : l;
}

function nonEmpty(v: unknown, at: string): string {
  if (v === undefined) throw new AuthzPolicyError(at, "is required");
  if (typeof v !== "string") throw new AuthzPolicyError(at, `expected a string, got ${describe(v)}`);
  if (v.trim() === "") throw new AuthzPolicyError(at, "must not be empty");
  return v;
}

function oneOf<T extends string>(v: unknown, at: string, allowed: readonly T[]): T {
  if (typeof v === "string" && (allowed as readonly string[]).includes(v)) return v as T;
  const hint = typeof v === "string" ? allowed.find((a) => a.toLowerCase() === v.toLowerCase()) : undefined;
  throw new AuthzPolicyError(at, `${JSON.stringify(v)} is not one of ${allowed.join(", ")}${hint !== undefined ? ` (did you mean ${hint}?)` : ""}`);
}

function port(v: unknown, at: string): number {
  const n = typeof v === "string" && /^\d{1,5}$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) throw new AuthzPolicyError(at, `${JSON.stringify(v)} is not a port (1-65535)`);
  return n;
}

function checkKeys(o: Obj, at: string, known: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (known.includes(k)) continue;
    const hint = closest(k, known);
    throw new AuthzPolicyError(`${at}.${k}`, `unknown field${hint !== undefined ? ` (did you mean ${hint}?)` : ` (known: ${known.join(", ")})`}`);
  }
}
