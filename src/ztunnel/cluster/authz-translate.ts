import { parseCidr } from "../authz/cidr.js";
import { compileStringMatch } from "../authz/string-match.js";
import type { AuthzMatch, AuthzPolicy, AuthzRule, AuthzScope, ServiceAccountMatch, StringMatch } from "../authz/types.js";
import type { PolicySelector } from "../state/selectors.js";
import type { ConfigNotice } from "../state/types.js";

// security.istio.io/v1 AuthorizationPolicy → the one policy model, as istiod translates for
// ztunnel (DESIGN §14). Rules: from (sources, OR) AND to (operations, OR) AND every `when`;
// each becomes one clause. What ztunnel cannot enforce at L4 — L7 fields (methods, paths,
// hosts, request principals, header and JWT conditions) and the CUSTOM action — never fails
// open: an ALLOW rule with L7 fields matches nothing (dropped), a DENY rule loses its L7 parts
// and denies on the L4 part alone, CUSTOM denies everything it applies to, AUDIT is dropped
// (it never changes a decision). Each such policy is reported once (a notice).

export const DRY_RUN_ANNOTATION = "istio.io/dry-run";

/** The parts of an AuthorizationPolicy object we read (watch events are raw JSON). */
export interface KubeAuthorizationPolicy {
  readonly metadata?: { readonly name?: string; readonly namespace?: string; readonly annotations?: Readonly<Record<string, string>> };
  readonly spec?: {
    readonly selector?: { readonly matchLabels?: Readonly<Record<string, string>> };
    readonly targetRef?: unknown;
    readonly targetRefs?: readonly unknown[];
    readonly action?: string;
    readonly provider?: unknown;
    readonly rules?: readonly KubeRule[];
  };
}

interface KubeRule {
  readonly from?: readonly { readonly source?: Readonly<Record<string, readonly string[] | undefined>> }[];
  readonly to?: readonly { readonly operation?: Readonly<Record<string, readonly string[] | undefined>> }[];
  readonly when?: readonly { readonly key?: string; readonly values?: readonly string[]; readonly notValues?: readonly string[] }[];
}

export interface TranslatedPolicy {
  readonly policy: AuthzPolicy;
  /** Set for WorkloadSelector policies: resolved against workload labels by the caller. */
  readonly selector: PolicySelector | undefined;
}

const L7_SOURCE = ["requestPrincipals", "notRequestPrincipals"];
const L7_OPERATION = ["hosts", "notHosts", "methods", "notMethods", "paths", "notPaths"];

// `when` keys ztunnel can evaluate, and the match field each feeds (positive, negative).
const WHEN_L4: Readonly<Record<string, readonly [keyof AuthzMatch, keyof AuthzMatch]>> = {
  "source.ip": ["sourceIps", "notSourceIps"],
  "remote.ip": ["sourceIps", "notSourceIps"],
  "source.namespace": ["namespaces", "notNamespaces"],
  "source.principal": ["principals", "notPrincipals"],
  "source.serviceAccount": ["serviceAccounts", "notServiceAccounts"],
  "destination.ip": ["destinationIps", "notDestinationIps"],
  "destination.port": ["destinationPorts", "notDestinationPorts"],
};

// Source fields → match fields (remoteIpBlocks: ztunnel sees no proxy in front, remote = source).
const SOURCE_L4: Readonly<Record<string, keyof AuthzMatch>> = {
  principals: "principals",
  notPrincipals: "notPrincipals",
  namespaces: "namespaces",
  notNamespaces: "notNamespaces",
  serviceAccounts: "serviceAccounts",
  notServiceAccounts: "notServiceAccounts",
  ipBlocks: "sourceIps",
  notIpBlocks: "notSourceIps",
  remoteIpBlocks: "sourceIps",
  notRemoteIpBlocks: "notSourceIps",
};
const OPERATION_L4: Readonly<Record<string, keyof AuthzMatch>> = { ports: "destinationPorts", notPorts: "notDestinationPorts" };

/** A value ztunnel cannot parse: the rule is broken (ALLOW: dropped; DENY: denies on everything else). */
class BadValue extends Error {}

export function translateAuthorizationPolicy(ap: KubeAuthorizationPolicy, rootNamespace: string, notices: ConfigNotice[]): TranslatedPolicy | undefined {
  const name = ap.metadata?.name;
  const namespace = ap.metadata?.namespace;
  if (name === undefined || namespace === undefined) return undefined;
  const object = `AuthorizationPolicy ${namespace}/${name}`;
  const spec = ap.spec ?? {};
  const report = (field: string, effect: ConfigNotice["effect"], reason: string): void => void notices.push({ object, field, effect, reason });
  const action = spec.action ?? "ALLOW";
  if ((spec.targetRefs !== undefined && spec.targetRefs.length > 0) || spec.targetRef !== undefined) {
    report("targetRefs", "not-enforced", "applies to the referenced gateway or service (enforced by that waypoint or gateway), not by ztunnel");
    return undefined;
  }
  if (action === "AUDIT") {
    report("action", "dropped", "AUDIT is not supported by ztunnel; it never changes a decision");
    return undefined;
  }
  const dryRun = ap.metadata?.annotations?.[DRY_RUN_ANNOTATION] === "true";
  const matchLabels = spec.selector?.matchLabels;
  const scope: AuthzScope = matchLabels !== undefined ? "WorkloadSelector" : namespace === rootNamespace ? "Global" : "Namespace";
  const selector = scope === "WorkloadSelector" ? { key: `${namespace}/${name}`, namespace, matchLabels: matchLabels ?? {} } : undefined;
  const base = { name, namespace, scope, dryRun };

  if (action === "CUSTOM") {
    report("action", "translated", "CUSTOM (an external authorizer) cannot be enforced by ztunnel: every connection the policy applies to is denied");
    return { policy: { ...base, action: "Deny", rules: [[]] }, selector };
  }
  if (action !== "ALLOW" && action !== "DENY") {
    report("action", "translated", `unknown action "${action}": every connection the policy applies to is denied`);
    return { policy: { ...base, action: "Deny", rules: [[]] }, selector };
  }
  const allow = action === "ALLOW";
  const rules: AuthzRule[] = [];
  (spec.rules ?? []).forEach((rule, i) => {
    const at = `rules[${i}]`;
    const l7 = l7Fields(rule);
    if (l7.length > 0 && allow) {
      report(`${at} ${l7.join(", ")}`, "translated", "L7 conditions cannot be checked by ztunnel: this ALLOW rule matches nothing");
      return;
    }
    if (l7.length > 0) report(`${at} ${l7.join(", ")}`, "translated", "L7 conditions cannot be checked by ztunnel: this DENY rule denies on its L4 conditions alone");
    try {
      rules.push(translateRule(rule));
    } catch (err) {
      if (!(err instanceof BadValue)) throw err;
      if (allow) report(at, "translated", `${err.message}: this ALLOW rule matches nothing`);
      else {
        report(at, "translated", `${err.message}: this DENY rule denies every connection`);
        rules.push([]);
      }
    }
  });
  return { policy: { ...base, action: allow ? "Allow" : "Deny", rules }, selector };
}

function l7Fields(rule: KubeRule): string[] {
  const out = new Set<string>();
  for (const f of rule.from ?? []) for (const k of L7_SOURCE) if ((f.source?.[k] ?? []).length > 0) out.add(`from.source.${k}`);
  for (const t of rule.to ?? []) for (const k of L7_OPERATION) if ((t.operation?.[k] ?? []).length > 0) out.add(`to.operation.${k}`);
  for (const w of rule.when ?? []) if (w.key === undefined || WHEN_L4[w.key] === undefined) out.add(`when ${w.key ?? "(no key)"}`);
  return [...out];
}

// L7 parts are left out here (the caller decided the rule survives). A source or operation
// left with no L4 field matches anything, which makes its whole clause match anything.
function translateRule(rule: KubeRule): AuthzRule {
  const clauses: AuthzMatch[][] = [];
  if (rule.from !== undefined && rule.from.length > 0) {
    const matches = rule.from.map((f) => fieldsToMatch(f.source ?? {}, SOURCE_L4));
    if (!matches.some(isEmpty)) clauses.push(matches);
  }
  if (rule.to !== undefined && rule.to.length > 0) {
    const matches = rule.to.map((t) => fieldsToMatch(t.operation ?? {}, OPERATION_L4));
    if (!matches.some(isEmpty)) clauses.push(matches);
  }
  for (const w of rule.when ?? []) {
    const fields = w.key === undefined ? undefined : WHEN_L4[w.key];
    if (fields === undefined) continue;
    const m: Record<string, unknown> = {};
    if ((w.values ?? []).length > 0) m[fields[0]] = convert(fields[0], w.values ?? []);
    if ((w.notValues ?? []).length > 0) m[fields[1]] = convert(fields[1], w.notValues ?? []);
    if (Object.keys(m).length > 0) clauses.push([m as AuthzMatch]);
  }
  return clauses;
}

function fieldsToMatch(src: Readonly<Record<string, readonly string[] | undefined>>, map: Readonly<Record<string, keyof AuthzMatch>>): AuthzMatch {
  const m: Record<string, unknown[]> = {};
  for (const [k, field] of Object.entries(map)) {
    const values = src[k];
    if (values === undefined || values.length === 0) continue;
    m[field] = [...(m[field] ?? []), ...convert(field, values)];
  }
  return m as AuthzMatch;
}

function isEmpty(m: AuthzMatch): boolean {
  return Object.keys(m).length === 0;
}

function convert(field: keyof AuthzMatch, values: readonly string[]): unknown[] {
  switch (field) {
    case "sourceIps":
    case "notSourceIps":
    case "destinationIps":
    case "notDestinationIps":
      return values.map(cidrText);
    case "destinationPorts":
    case "notDestinationPorts":
      return values.map(portNumber);
    case "serviceAccounts":
    case "notServiceAccounts":
      return values.map(serviceAccount);
    default:
      return values.map(stringMatch);
  }
}

function cidrText(v: string): string {
  const c = parseCidr(v);
  if (typeof c === "string") throw new BadValue(`"${v}": ${c}`);
  return c.text;
}

function portNumber(v: string): number {
  const n = /^\d{1,5}$/.test(String(v)) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new BadValue(`"${v}" is not a port`);
  return n;
}

function serviceAccount(v: string): ServiceAccountMatch {
  const [namespace = "", sa = "", ...rest] = String(v).split("/");
  if (namespace === "" || sa === "" || rest.length > 0) throw new BadValue(`"${v}" is not "namespace/serviceAccount"`);
  return { namespace, serviceAccount: sa };
}

function stringMatch(v: string): StringMatch {
  const m = compileStringMatch(v);
  if (typeof m === "string") throw new BadValue(`"${v}": ${m}`);
  return m;
}
