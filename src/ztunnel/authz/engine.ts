import { formatIdentity, type Identity } from "../tls/identity.js";
import { cidrContains, parseIp, type Cidr, type IpWords } from "./cidr.js";
import { compilePolicies, type CompiledMatch, type CompiledPolicy } from "./compile.js";
import { stringMatches, type StringMatcher } from "./string-match.js";
import type { AuthzDecision, AuthzPolicy, ConnectionInfo, DestinationWorkload } from "./types.js";

// ztunnel's L4 authorization (DESIGN §14): the policies that apply to a destination workload
// are the Global ones, the Namespace ones of its namespace, and the WorkloadSelector ones its
// `authorizationPolicies` name (sources resolve selectors to that list; the engine never looks
// at labels). Any matching Deny denies; with no Allow policy the connection is allowed;
// otherwise some Allow must match. Dry-run policies are evaluated only to report what they
// would have done.
//
// Compiled once per policy set. Per connection: one cached lookup of the applicable policies
// (keyed by the workload object), then matching with no string building unless a principal
// matcher is actually reached; decisions are precomputed objects.

export const NO_POLICIES: AuthzDecision = Object.freeze({ allow: true, policy: undefined, reason: "no authorization policies apply" });
export const NO_ALLOW_POLICIES: AuthzDecision = Object.freeze({ allow: true, policy: undefined, reason: "no ALLOW policy applies and no DENY policy matched" });
export const NOT_ALLOWED: AuthzDecision = Object.freeze({ allow: false, policy: undefined, reason: "not allowed: ALLOW policies apply but none matched" });

interface Applicable {
  readonly deny: readonly CompiledPolicy[];
  readonly allow: readonly CompiledPolicy[];
  /** Dry-run policies, already split; empty in the common case. */
  readonly dryDeny: readonly CompiledPolicy[];
  readonly dryAllow: readonly CompiledPolicy[];
}

const EMPTY: Applicable = Object.freeze({ deny: [], allow: [], dryDeny: [], dryAllow: [] });

export interface EngineStats {
  readonly policies: number;
  readonly global: number;
  readonly namespace: number;
  readonly workloadSelector: number;
  readonly dryRun: number;
}

export class AuthzEngine {
  readonly policies: readonly CompiledPolicy[];
  readonly stats: EngineStats;
  private readonly global: CompiledPolicy[] = [];
  private readonly byNamespace = new Map<string, CompiledPolicy[]>();
  private readonly selected = new Map<string, CompiledPolicy>();
  // Workload objects are replaced when the state changes, so the object is a safe cache key.
  private readonly cache = new WeakMap<DestinationWorkload, Applicable>();

  /** Compiles a validated policy set (the model; see types.ts). */
  static compile(policies: readonly AuthzPolicy[]): AuthzEngine {
    return new AuthzEngine(compilePolicies(policies));
  }

  constructor(compiled: readonly CompiledPolicy[]) {
    this.policies = compiled;
    let dryRun = 0;
    for (const p of compiled) {
      if (p.dryRun) dryRun++;
      if (p.scope === "Global") this.global.push(p);
      else if (p.scope === "Namespace") push(this.byNamespace, p.namespace, p);
      else this.selected.set(p.key, p);
    }
    this.stats = { policies: compiled.length, global: this.global.length, namespace: count(this.byNamespace), workloadSelector: this.selected.size, dryRun };
  }

  /** The policies (enforced and dry-run) that apply to a workload, `namespace/name` keys. */
  applicableTo(w: DestinationWorkload): string[] {
    const a = this.applicable(w);
    return [...a.deny, ...a.allow, ...a.dryDeny, ...a.dryAllow].map((p) => p.key);
  }

  evaluate(conn: ConnectionInfo): AuthzDecision {
    const blocked = conn.destination.failClosed;
    if (blocked !== undefined) return { allow: false, policy: undefined, reason: blocked };
    // Behind a waypoint, only the waypoint may connect: anything else bypassed it.
    const wp = conn.destination.waypointRoute?.identity;
    if (wp !== undefined) {
      const src = conn.sourceIdentity;
      if (src === undefined || src.trustDomain !== wp.trustDomain || src.namespace !== wp.namespace || src.serviceAccount !== wp.serviceAccount) {
        return { allow: false, policy: undefined, reason: `destination is behind waypoint spiffe://${wp.trustDomain}/ns/${wp.namespace}/sa/${wp.serviceAccount}; traffic must come through it` };
      }
    }
    const a = this.applicable(conn.destination);
    if (a === EMPTY) return NO_POLICIES;
    const ctx = new EvalContext(conn);
    const decision = decide(a.deny, a.allow, ctx);
    if (a.dryDeny.length === 0 && a.dryAllow.length === 0) return decision;
    const shadow = decide(a.deny.concat(a.dryDeny), a.allow.concat(a.dryAllow), ctx);
    return { ...decision, dryRun: shadow };
  }

  private applicable(w: DestinationWorkload): Applicable {
    const hit = this.cache.get(w);
    if (hit !== undefined) return hit;
    const found: CompiledPolicy[] = [...this.global, ...(this.byNamespace.get(w.namespace) ?? [])];
    for (const key of w.authorizationPolicies) {
      const p = this.selected.get(key);
      // Unknown keys are a transient state (policy not yet received, or just removed): skip.
      if (p !== undefined && !found.includes(p)) found.push(p);
    }
    const a: Applicable =
      found.length === 0
        ? EMPTY
        : {
            deny: found.filter((p) => !p.dryRun && p.action === "Deny"),
            allow: found.filter((p) => !p.dryRun && p.action === "Allow"),
            dryDeny: found.filter((p) => p.dryRun && p.action === "Deny"),
            dryAllow: found.filter((p) => p.dryRun && p.action === "Allow"),
          };
    this.cache.set(w, a);
    return a;
  }
}

export interface RecheckResult<C> {
  readonly connection: C;
  readonly decision: AuthzDecision;
}

/**
 * After a state change: which open connections the engine now denies. The one re-check (the
 * workers call it through PolicyAuthorizer.recheck): each connection is judged with the
 * ConnectionInfo `info` gives for it, built from the current state.
 */
export function recheck<C>(engine: AuthzEngine, connections: Iterable<C>, info: (c: C) => ConnectionInfo | undefined): RecheckResult<C>[] {
  const denied: RecheckResult<C>[] = [];
  for (const c of connections) {
    const i = info(c);
    if (i === undefined) continue;
    const decision = engine.evaluate(i);
    if (!decision.allow) denied.push({ connection: c, decision });
  }
  return denied;
}

function decide(deny: readonly CompiledPolicy[], allow: readonly CompiledPolicy[], ctx: EvalContext): AuthzDecision {
  for (const p of deny) if (policyMatches(p, ctx)) return p.decision;
  if (allow.length === 0) return NO_ALLOW_POLICIES;
  for (const p of allow) if (policyMatches(p, ctx)) return p.decision;
  return NOT_ALLOWED;
}

/** What a match is checked against, derived lazily from the connection. */
class EvalContext {
  private principalValue: string | undefined;
  private src: IpWords | null | undefined;
  private dst: IpWords | null | undefined;

  constructor(readonly conn: ConnectionInfo) {}

  get namespace(): string {
    return this.conn.sourceIdentity?.namespace ?? "";
  }

  /** `<td>/ns/<ns>/sa/<sa>` (ztunnel compares principals without "spiffe://"); "" if none. */
  get principal(): string {
    if (this.principalValue === undefined) {
      const id = this.conn.sourceIdentity;
      this.principalValue = id === undefined ? "" : principalOf(id);
    }
    return this.principalValue;
  }

  get sourceIp(): IpWords | null {
    if (this.src === undefined) this.src = parseIp(this.conn.sourceIp) ?? null;
    return this.src;
  }

  get destinationIp(): IpWords | null {
    if (this.dst === undefined) this.dst = parseIp(this.conn.destinationIp) ?? null;
    return this.dst;
  }
}

// Identities are long-lived objects (one per peer certificate), so their principal string is
// built once, not per connection.
const principals = new WeakMap<Identity, string>();

let lastId: Identity | undefined;
let lastPrincipal = "";

function principalOf(id: Identity): string {
  if (id === lastId) return lastPrincipal;
  let p = principals.get(id);
  if (p === undefined) {
    p = formatIdentity(id).slice("spiffe://".length);
    principals.set(id, p);
  }
  lastId = id;
  lastPrincipal = p;
  return p;
}

function policyMatches(p: CompiledPolicy, ctx: EvalContext): boolean {
  // Any rule; within it every clause; within a clause any match. No rules = never matches.
  for (const rule of p.rules) {
    let all = true;
    for (const clause of rule) {
      // An empty clause matches (ztunnel), e.g. Istio's `rules: [{}]` = allow all.
      if (clause.length === 0) continue;
      let any = false;
      for (const m of clause) {
        if (matchMatches(m, ctx)) {
          any = true;
          break;
        }
      }
      if (!any) {
        all = false;
        break;
      }
    }
    if (all) return true;
  }
  return false;
}

// Cheapest checks first; a field that is absent imposes no condition.
function matchMatches(m: CompiledMatch, ctx: EvalContext): boolean {
  if (m.empty) return false;
  const port = ctx.conn.destinationPort;
  if (m.destinationPorts !== undefined && !m.destinationPorts.includes(port)) return false;
  if (m.notDestinationPorts !== undefined && m.notDestinationPorts.includes(port)) return false;
  if (m.namespaces !== undefined || m.notNamespaces !== undefined) {
    const ns = ctx.namespace;
    if (m.namespaces !== undefined && !anyString(m.namespaces, ns)) return false;
    if (m.notNamespaces !== undefined && anyString(m.notNamespaces, ns)) return false;
  }
  if (m.serviceAccounts !== undefined && !anyAccount(m.serviceAccounts, ctx)) return false;
  if (m.notServiceAccounts !== undefined && anyAccount(m.notServiceAccounts, ctx)) return false;
  if (m.principals !== undefined && !anyString(m.principals, ctx.principal)) return false;
  if (m.notPrincipals !== undefined && anyString(m.notPrincipals, ctx.principal)) return false;
  if (m.sourceIps !== undefined && !anyCidr(m.sourceIps, ctx.sourceIp)) return false;
  if (m.notSourceIps !== undefined && anyCidr(m.notSourceIps, ctx.sourceIp)) return false;
  if (m.destinationIps !== undefined && !anyCidr(m.destinationIps, ctx.destinationIp)) return false;
  if (m.notDestinationIps !== undefined && anyCidr(m.notDestinationIps, ctx.destinationIp)) return false;
  return true;
}

function anyString(ms: readonly StringMatcher[], value: string): boolean {
  for (const m of ms) if (stringMatches(m, value)) return true;
  return false;
}

function anyAccount(ms: readonly { namespace: string; serviceAccount: string }[], ctx: EvalContext): boolean {
  const id = ctx.conn.sourceIdentity;
  if (id === undefined) return false;
  for (const m of ms) if (m.namespace === id.namespace && m.serviceAccount === id.serviceAccount) return true;
  return false;
}

function anyCidr(cs: readonly Cidr[], ip: IpWords | null): boolean {
  // An address we cannot parse is in no range: positive lists fail, negative lists pass.
  if (ip === null) return false;
  for (const c of cs) if (cidrContains(c, ip)) return true;
  return false;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const l = m.get(k);
  if (l === undefined) m.set(k, [v]);
  else l.push(v);
}

function count<K, V>(m: Map<K, V[]>): number {
  let n = 0;
  for (const l of m.values()) n += l.length;
  return n;
}
