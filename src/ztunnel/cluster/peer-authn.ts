import type { AuthzPolicy } from "../authz/types.js";
import type { ConfigNotice, Workload } from "../state/types.js";

// security.istio.io/v1 PeerAuthentication → what istiod gives ztunnel: STRICT mTLS means
// plaintext (15006, no peer identity) is denied to the selected workloads; HBONE is mTLS
// anyway. Istio's precedence per workload: a PeerAuthentication selecting it (its namespace),
// else its namespace's (no selector), else the root namespace's (mesh-wide); UNSET inherits the
// next level; default PERMISSIVE. portLevelMtls (selector policies only) overrides per port.
// Each distinct outcome becomes one WorkloadSelector DENY policy in the root namespace,
// `notPrincipals: ["*"]` (no identity) plus the ports, listed on the workloads it applies to.

export interface KubePeerAuthentication {
  readonly metadata?: { readonly name?: string; readonly namespace?: string; readonly creationTimestamp?: string | Date };
  readonly spec?: {
    readonly selector?: { readonly matchLabels?: Readonly<Record<string, string>> };
    readonly mtls?: { readonly mode?: string };
    readonly portLevelMtls?: Readonly<Record<string, { readonly mode?: string } | undefined>>;
  };
}

type Mode = "STRICT" | "PERMISSIVE" | "DISABLE";

export interface PeerAuthnResult {
  readonly policies: AuthzPolicy[];
  /** workload uid → the policy keys to add to its authorizationPolicies. */
  readonly byWorkload: ReadonlyMap<string, string>;
}

const PRESENCE = { kind: "presence", value: "" } as const;

export function translatePeerAuthentications(pas: readonly KubePeerAuthentication[], workloads: readonly Workload[], rootNamespace: string, notices: ConfigNotice[]): PeerAuthnResult {
  // Oldest first, as istiod breaks ties between several policies at one level.
  const sorted = [...pas].sort((a, b) => time(a) - time(b) || `${a.metadata?.namespace}/${a.metadata?.name}`.localeCompare(`${b.metadata?.namespace}/${b.metadata?.name}`));
  for (const pa of sorted) {
    const object = `PeerAuthentication ${pa.metadata?.namespace ?? ""}/${pa.metadata?.name ?? ""}`;
    const raw = pa.spec?.mtls?.mode;
    if (raw !== undefined && modeOf(raw) === undefined && raw !== "UNSET") {
      notices.push({ object, field: "mtls.mode", effect: "translated", reason: `unknown mode "${raw}": treated as STRICT` });
    }
    if (pa.spec?.portLevelMtls !== undefined && pa.spec.selector === undefined) {
      notices.push({ object, field: "portLevelMtls", effect: "not-enforced", reason: "portLevelMtls only applies to a PeerAuthentication with a selector (as in Istio)" });
    }
  }
  const mesh = sorted.find((p) => p.metadata?.namespace === rootNamespace && p.spec?.selector === undefined);
  const policies = new Map<string, AuthzPolicy>();
  const byWorkload = new Map<string, string>();
  for (const w of workloads) {
    const nsLevel = sorted.find((p) => p.metadata?.namespace === w.namespace && p.spec?.selector === undefined);
    const wlLevel = sorted.find((p) => p.metadata?.namespace === w.namespace && p.spec?.selector !== undefined && selects(p, w));
    const mode = effective(wlLevel, nsLevel, mesh);
    const ports = new Map<number, Mode>();
    for (const [port, pm] of Object.entries(wlLevel?.spec?.portLevelMtls ?? {})) {
      const n = Number(port);
      const m = pm?.mode === undefined || pm.mode === "UNSET" ? mode : (modeOf(pm.mode) ?? "STRICT");
      if (Number.isInteger(n) && n > 0 && n < 65536) ports.set(n, m);
    }
    const policy = strictPolicy(mode, ports, rootNamespace);
    if (policy === undefined) continue;
    policies.set(policy.name, policy);
    byWorkload.set(w.uid, `${policy.namespace}/${policy.name}`);
  }
  return { policies: [...policies.values()], byWorkload };
}

function strictPolicy(mode: Mode, ports: ReadonlyMap<number, Mode>, rootNamespace: string): AuthzPolicy | undefined {
  const strictPorts = [...ports].filter(([, m]) => m === "STRICT").map(([p]) => p).sort((a, b) => a - b);
  const openPorts = [...ports].filter(([, m]) => m !== "STRICT").map(([p]) => p).sort((a, b) => a - b);
  const base = { namespace: rootNamespace, scope: "WorkloadSelector", action: "Deny", dryRun: false } as const;
  if (mode === "STRICT") {
    const name = openPorts.length === 0 ? "istio_converted_static_strict" : `istio_converted_static_strict_except_${openPorts.join("_")}`;
    return { ...base, name, rules: [[[openPorts.length === 0 ? { notPrincipals: [PRESENCE] } : { notPrincipals: [PRESENCE], notDestinationPorts: openPorts }]]] };
  }
  if (strictPorts.length === 0) return undefined;
  return { ...base, name: `istio_converted_static_strict_ports_${strictPorts.join("_")}`, rules: [[[{ notPrincipals: [PRESENCE], destinationPorts: strictPorts }]]] };
}

function effective(...levels: (KubePeerAuthentication | undefined)[]): Mode {
  for (const l of levels) {
    const raw = l?.spec?.mtls?.mode;
    if (l === undefined || raw === undefined || raw === "UNSET") continue;
    // An unknown mode is not a reason to accept plaintext.
    return modeOf(raw) ?? "STRICT";
  }
  return "PERMISSIVE";
}

function modeOf(s: string): Mode | undefined {
  return s === "STRICT" || s === "PERMISSIVE" || s === "DISABLE" ? s : undefined;
}

function selects(pa: KubePeerAuthentication, w: Workload): boolean {
  for (const [k, v] of Object.entries(pa.spec?.selector?.matchLabels ?? {})) if (w.labels[k] !== v) return false;
  return true;
}

function time(pa: KubePeerAuthentication): number {
  const t = pa.metadata?.creationTimestamp;
  const ms = t === undefined ? 0 : new Date(t).getTime();
  return Number.isNaN(ms) ? 0 : ms;
}
