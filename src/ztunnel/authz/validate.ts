import { closest } from "../../shared/did-you-mean.js";
import { parseCidr } from "./cidr.js";
import { AuthzPolicyError } from "./errors.js";
import { compileStringMatch, describe } from "./string-match.js";
import type { AuthzAction, AuthzMatch, AuthzPolicy, AuthzRule, AuthzScope, ServiceAccountMatch, StringMatch } from "./types.js";
import { policyKey } from "./types.js";

// Where policies written by people enter (the local file): untrusted input becomes the one
// policy model, once. Unknown keys are rejected with a hint; every error names the field path
// (`policies[2].rules[0][1][0].principals[3]`). String matches may be written in Istio's
// notation ("*", "abc*", "*abc", "abc") or ztunnel's serde form ({Exact: "abc"}, …).

const POLICY_KEYS = ["name", "namespace", "scope", "action", "rules", "dryRun"] as const;
const STRING_KEYS = ["namespaces", "notNamespaces", "principals", "notPrincipals"] as const;
const SA_KEYS = ["serviceAccounts", "notServiceAccounts"] as const;
const IP_KEYS = ["sourceIps", "notSourceIps", "destinationIps", "notDestinationIps"] as const;
const PORT_KEYS = ["destinationPorts", "notDestinationPorts"] as const;
export const MATCH_KEYS = [...STRING_KEYS, ...SA_KEYS, ...IP_KEYS, ...PORT_KEYS] as const;
const SCOPES: readonly AuthzScope[] = ["Global", "Namespace", "WorkloadSelector"];
const ACTIONS: readonly AuthzAction[] = ["Allow", "Deny"];

/**
 * Validates a list of policies; `at` is the path of the list in the config. `extraKeys` are
 * keys a caller handles itself (the local file's `selector`) and are skipped here.
 */
export function parsePolicies(raw: unknown, at = "policies", extraKeys: readonly string[] = []): AuthzPolicy[] {
  if (raw === undefined || raw === null) return [];
  const out = list(raw, at).map((p, i) => parsePolicy(p, `${at}[${i}]`, extraKeys));
  const seen = new Map<string, number>();
  out.forEach((p, i) => {
    const key = policyKey(p);
    const first = seen.get(key);
    if (first !== undefined) throw new AuthzPolicyError(`${at}[${i}].name`, `duplicate policy "${key}" (also ${at}[${first}])`);
    seen.set(key, i);
  });
  return out;
}

export function parsePolicy(raw: unknown, at: string, extraKeys: readonly string[] = []): AuthzPolicy {
  const o = object(raw, at);
  checkKeys(o, at, [...POLICY_KEYS, ...extraKeys]);
  const name = nonEmpty(o.name, `${at}.name`);
  const namespace = nonEmpty(o.namespace, `${at}.namespace`);
  const scope = oneOf(o.scope ?? "Namespace", `${at}.scope`, SCOPES);
  if (o.action === "Audit") {
    throw new AuthzPolicyError(`${at}.action`, "Audit is not supported by ztunnel (Istio's ztunnel has no audit action); remove the policy or use dryRun: true to see what it would do");
  }
  const action = oneOf(o.action ?? "Allow", `${at}.action`, ACTIONS);
  if (o.dryRun !== undefined && typeof o.dryRun !== "boolean") throw new AuthzPolicyError(`${at}.dryRun`, `expected true or false, got ${describe(o.dryRun)}`);
  const rules: AuthzRule[] = list(o.rules, `${at}.rules`).map((rule, i) =>
    list(rule, `${at}.rules[${i}]`).map((clause, j) => list(clause, `${at}.rules[${i}][${j}]`).map((m, k) => parseMatch(m, `${at}.rules[${i}][${j}][${k}]`))),
  );
  return { name, namespace, scope, action, rules, dryRun: o.dryRun === true };
}

function parseMatch(raw: unknown, at: string): AuthzMatch {
  const o = object(raw, at);
  checkKeys(o, at, MATCH_KEYS);
  const out: Record<string, unknown[]> = {};
  for (const k of STRING_KEYS) {
    const items = optionalList(o[k], `${at}.${k}`);
    if (items !== undefined) out[k] = items.map((s, i) => stringMatch(s, `${at}.${k}[${i}]`, k.toLowerCase().endsWith("principals")));
  }
  for (const k of SA_KEYS) {
    const items = optionalList(o[k], `${at}.${k}`);
    if (items !== undefined) out[k] = items.map((s, i) => serviceAccount(s, `${at}.${k}[${i}]`));
  }
  for (const k of IP_KEYS) {
    const items = optionalList(o[k], `${at}.${k}`);
    if (items !== undefined) out[k] = items.map((s, i) => cidr(s, `${at}.${k}[${i}]`));
  }
  for (const k of PORT_KEYS) {
    const items = optionalList(o[k], `${at}.${k}`);
    if (items !== undefined) out[k] = items.map((v, i) => port(v, `${at}.${k}[${i}]`));
  }
  return out as AuthzMatch;
}

function stringMatch(s: unknown, at: string, principal: boolean): StringMatch {
  if (principal && typeof s === "string" && s.startsWith("spiffe://")) {
    throw new AuthzPolicyError(at, `write principals without "spiffe://" ("${s.slice("spiffe://".length)}"); ztunnel compares the part after it`);
  }
  const m = compileStringMatch(s);
  if (typeof m === "string") throw new AuthzPolicyError(at, m);
  return m;
}

/** A CIDR in canonical text (what the model stores); an AuthzPolicyError if it is not one. */
export function cidr(v: unknown, at: string): string {
  if (typeof v !== "string") throw new AuthzPolicyError(at, `expected an IP or CIDR string, got ${describe(v)}`);
  const c = parseCidr(v);
  if (typeof c === "string") throw new AuthzPolicyError(at, c);
  return c.text;
}

function serviceAccount(v: unknown, at: string): ServiceAccountMatch {
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

/** A port 1-65535 (numbers or digit strings, as YAML map keys arrive). */
export function port(v: unknown, at: string): number {
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
