import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { AuthzEngine, AuthzPolicyError, NO_ALLOW_POLICIES, NO_POLICIES, NOT_ALLOWED, parsePolicies, recheck } from "../../src/ztunnel/authz/index.js";
import type { ConnectionInfo, DestinationWorkload } from "../../src/ztunnel/authz/index.js";
import { parseLocalConfig } from "../../src/ztunnel/state/local-config.js";
import { makeIdentity, type Identity } from "../../src/ztunnel/tls/identity.js";

// The policy matrix: each case is a policy set, a connection and the expected decision, in
// ztunnel's semantics (deny wins, no ALLOW = allow, else an ALLOW must match). Policies are
// written as in the local file and enter the model through its one validator.

/** A policy as written in the local file (Istio's string notation allowed). */
type RawPolicy = Record<string, unknown>;
type RawMatch = Record<string, unknown>;

function compile(raw: readonly RawPolicy[]): AuthzEngine {
  return AuthzEngine.compile(parsePolicies(raw));
}

const sleep = makeIdentity("cluster.local", "default", "sleep");
const other = makeIdentity("cluster.local", "other", "client");
const foreignTd = makeIdentity("example.org", "default", "sleep");

const echo: DestinationWorkload = { namespace: "default", authorizationPolicies: [] };
const echoSelected: DestinationWorkload = { namespace: "default", authorizationPolicies: ["default/d"] };
const db: DestinationWorkload = { namespace: "data", authorizationPolicies: [] };

function conn(over: Partial<ConnectionInfo> & { id?: Identity | null } = {}): ConnectionInfo {
  const { id, ...rest } = over;
  return {
    sourceIdentity: id === null ? undefined : (id ?? sleep),
    sourceIp: "10.1.0.5",
    destinationIp: "10.2.0.7",
    destinationPort: 8080,
    destination: echo,
    ...rest,
  };
}

function pol(name: string, action: string, m: RawMatch | null, extra: RawPolicy = {}): RawPolicy {
  return { name, namespace: "default", scope: "Namespace", action, rules: m === null ? [] : [[[m]]], ...extra };
}

interface Case {
  readonly name: string;
  readonly policies: readonly RawPolicy[];
  readonly conn: ConnectionInfo;
  readonly allow: boolean;
  readonly policy?: string | undefined;
}

const cases: Case[] = [
  // No policies / scope
  { name: "no policies: allow", policies: [], conn: conn(), allow: true, policy: undefined },
  { name: "only a non-matching Deny: allow", policies: [pol("d", "Deny", { namespaces: ["evil"] })], conn: conn(), allow: true },
  { name: "Allow by principal (exact)", policies: [pol("a", "Allow", { principals: ["cluster.local/ns/default/sa/sleep"] })], conn: conn(), allow: true, policy: "default/a" },
  { name: "Allow by principal: other principal not allowed", policies: [pol("a", "Allow", { principals: ["cluster.local/ns/default/sa/sleep"] })], conn: conn({ id: other }), allow: false, policy: undefined },
  { name: "principal prefix", policies: [pol("a", "Allow", { principals: ["cluster.local/ns/default/*"] })], conn: conn(), allow: true },
  { name: "principal prefix does not match other ns", policies: [pol("a", "Allow", { principals: ["cluster.local/ns/default/*"] })], conn: conn({ id: other }), allow: false },
  { name: "principal suffix", policies: [pol("a", "Allow", { principals: ["*/sa/client"] })], conn: conn({ id: other }), allow: true },
  { name: "principal object form Exact", policies: [pol("a", "Allow", { principals: [{ Exact: "example.org/ns/default/sa/sleep" }] })], conn: conn({ id: foreignTd }), allow: true },
  { name: "principal trust domain is compared", policies: [pol("a", "Allow", { principals: ["cluster.local/ns/default/sa/sleep"] })], conn: conn({ id: foreignTd }), allow: false },
  { name: "principals presence: mTLS peer matches", policies: [pol("a", "Allow", { principals: ["*"] })], conn: conn(), allow: true },
  { name: "principals presence: plaintext never matches", policies: [pol("a", "Allow", { principals: ["*"] })], conn: conn({ id: null }), allow: false },
  { name: "require mTLS: plaintext denied", policies: [pol("require-mtls", "Deny", { notPrincipals: ["*"] })], conn: conn({ id: null }), allow: false, policy: "default/require-mtls" },
  { name: "require mTLS: mTLS allowed", policies: [pol("require-mtls", "Deny", { notPrincipals: ["*"] })], conn: conn(), allow: true, policy: undefined },
  { name: "require mTLS with object Presence", policies: [pol("m", "Deny", { notPrincipals: [{ Presence: {} }] })], conn: conn({ id: null }), allow: false, policy: "default/m" },
  { name: "deny by namespace", policies: [pol("d", "Deny", { namespaces: ["other"] })], conn: conn({ id: other }), allow: false, policy: "default/d" },
  { name: "deny by namespace: other namespace passes", policies: [pol("d", "Deny", { namespaces: ["other"] })], conn: conn(), allow: true },
  { name: "notNamespaces deny: everything but default", policies: [pol("d", "Deny", { notNamespaces: ["default"] })], conn: conn({ id: other }), allow: false },
  { name: "notNamespaces deny matches plaintext (no namespace)", policies: [pol("d", "Deny", { notNamespaces: ["default"] })], conn: conn({ id: null }), allow: false },
  { name: "namespaces presence never matches plaintext", policies: [pol("a", "Allow", { namespaces: ["*"] })], conn: conn({ id: null }), allow: false },
  { name: "serviceAccounts object", policies: [pol("a", "Allow", { serviceAccounts: [{ namespace: "other", serviceAccount: "client" }] })], conn: conn({ id: other }), allow: true },
  { name: "serviceAccounts shorthand; no identity never matches", policies: [pol("a", "Allow", { serviceAccounts: ["default/sleep"] })], conn: conn({ id: null }), allow: false },
  { name: "notServiceAccounts deny", policies: [pol("d", "Deny", { notServiceAccounts: ["default/sleep"] })], conn: conn({ id: other }), allow: false },
  // Ports
  { name: "deny by port", policies: [pol("d", "Deny", { destinationPorts: [8080] })], conn: conn(), allow: false },
  { name: "deny by port: other port passes", policies: [pol("d", "Deny", { destinationPorts: [22] })], conn: conn(), allow: true },
  { name: "allow only listed ports", policies: [pol("a", "Allow", { destinationPorts: [80, 443] })], conn: conn({ destinationPort: 8080 }), allow: false },
  { name: "notDestinationPorts allow", policies: [pol("a", "Allow", { notDestinationPorts: [22] })], conn: conn(), allow: true },
  { name: "notDestinationPorts allow excludes the port", policies: [pol("a", "Allow", { notDestinationPorts: [8080] })], conn: conn(), allow: false },
  // CIDRs
  { name: "deny source CIDR v4", policies: [pol("d", "Deny", { sourceIps: ["10.1.0.0/16"] })], conn: conn(), allow: false },
  { name: "source CIDR v4 outside", policies: [pol("d", "Deny", { sourceIps: ["10.9.0.0/16"] })], conn: conn(), allow: true },
  { name: "source single IP", policies: [pol("a", "Allow", { sourceIps: ["10.1.0.5"] })], conn: conn(), allow: true },
  { name: "notSourceIps allow", policies: [pol("a", "Allow", { notSourceIps: ["10.1.0.0/24"] })], conn: conn(), allow: false },
  { name: "source CIDR v6", policies: [pol("a", "Allow", { sourceIps: ["fd00:1::/64"] })], conn: conn({ sourceIp: "fd00:1::abcd" }), allow: true },
  { name: "source CIDR v6 outside", policies: [pol("a", "Allow", { sourceIps: ["fd00:1::/64"] })], conn: conn({ sourceIp: "fd00:2::abcd" }), allow: false },
  { name: "v4 connection never in a v6 CIDR", policies: [pol("a", "Allow", { sourceIps: ["::/0"] })], conn: conn(), allow: false },
  { name: "v4-mapped source is its IPv4", policies: [pol("a", "Allow", { sourceIps: ["10.1.0.0/16"] })], conn: conn({ sourceIp: "::ffff:10.1.0.5" }), allow: true },
  { name: "destination CIDR v6 /127", policies: [pol("d", "Deny", { destinationIps: ["fd00::6/127"] })], conn: conn({ destinationIp: "fd00::7" }), allow: false },
  { name: "notDestinationIps deny", policies: [pol("d", "Deny", { notDestinationIps: ["10.2.0.0/16"] })], conn: conn({ destinationIp: "10.3.0.1" }), allow: false },
  { name: "0.0.0.0/0 matches any v4", policies: [pol("d", "Deny", { sourceIps: ["0.0.0.0/0"] })], conn: conn(), allow: false },
  // Deny wins; Allow sets
  { name: "deny wins over a matching allow", policies: [pol("a", "Allow", { principals: ["*"] }), pol("d", "Deny", { destinationPorts: [8080] })], conn: conn(), allow: false, policy: "default/d" },
  { name: "one of several allows matches", policies: [pol("a1", "Allow", { namespaces: ["x"] }), pol("a2", "Allow", { namespaces: ["default"] })], conn: conn(), allow: true, policy: "default/a2" },
  { name: "Allow with no rules denies all", policies: [pol("a", "Allow", null)], conn: conn(), allow: false },
  { name: "Deny with no rules denies nothing", policies: [pol("d", "Deny", null)], conn: conn(), allow: true },
  { name: "Allow rules: [[]] (empty clause) allows all", policies: [{ ...pol("a", "Allow", null), rules: [[]] }], conn: conn({ id: null }), allow: true, policy: "default/a" },
  { name: "empty match never matches", policies: [{ ...pol("a", "Allow", null), rules: [[[{}]]] }], conn: conn(), allow: false },
  // Match semantics: AND of fields, OR of matches in a clause, AND of clauses, OR of rules
  { name: "fields AND: namespace ok, port not", policies: [pol("a", "Allow", { namespaces: ["default"], destinationPorts: [80] })], conn: conn(), allow: false },
  { name: "positive and negative in one field type", policies: [pol("a", "Allow", { principals: ["cluster.local/*"], notPrincipals: ["*/sa/sleep"] })], conn: conn(), allow: false },
  {
    name: "clause OR of matches",
    policies: [{ ...pol("a", "Allow", null), rules: [[[{ namespaces: ["x"] }, { destinationPorts: [8080] }]]] }],
    conn: conn(),
    allow: true,
  },
  {
    name: "rule AND of clauses: second clause fails",
    policies: [{ ...pol("a", "Allow", null), rules: [[[{ namespaces: ["default"] }], [{ destinationPorts: [80] }]]] }],
    conn: conn(),
    allow: false,
  },
  {
    name: "rules OR: second rule matches",
    policies: [{ ...pol("a", "Allow", null), rules: [[[{ namespaces: ["x"] }]], [[{ namespaces: ["default"] }], [{ destinationPorts: [8080] }]]] }],
    conn: conn(),
    allow: true,
  },
  // Scope
  { name: "Namespace policy of another namespace does not apply", policies: [{ ...pol("d", "Deny", { principals: ["*"] }), namespace: "data" }], conn: conn(), allow: true },
  { name: "Namespace policy applies to its namespace", policies: [{ ...pol("d", "Deny", { principals: ["*"] }), namespace: "data" }], conn: conn({ destination: db }), allow: false, policy: "data/d" },
  { name: "Global policy applies in every namespace", policies: [{ ...pol("d", "Deny", { principals: ["*"] }), namespace: "istio-system", scope: "Global" }], conn: conn({ destination: db }), allow: false, policy: "istio-system/d" },
  {
    name: "Global Allow + namespace Allow: either may allow",
    policies: [
      { ...pol("g", "Allow", { namespaces: ["other"] }), namespace: "istio-system", scope: "Global" },
      pol("n", "Allow", { namespaces: ["default"] }),
    ],
    conn: conn({ id: other }),
    allow: true,
    policy: "istio-system/g",
  },
  {
    name: "Global Allow makes allow-list mode in another namespace",
    policies: [{ ...pol("g", "Allow", { namespaces: ["nobody"] }), namespace: "istio-system", scope: "Global" }],
    conn: conn({ destination: db }),
    allow: false,
  },
  // Workload selector: exactly the workloads whose authorizationPolicies name it
  {
    name: "WorkloadSelector policy applies to a workload that lists it",
    policies: [{ ...pol("d", "Deny", { principals: ["*"] }), scope: "WorkloadSelector" }],
    conn: conn({ destination: echoSelected }),
    allow: false,
    policy: "default/d",
  },
  {
    name: "WorkloadSelector policy does not apply to a workload that does not list it",
    policies: [{ ...pol("d", "Deny", { principals: ["*"] }), scope: "WorkloadSelector" }],
    conn: conn(),
    allow: true,
  },
  {
    name: "workload lists the policy (control-plane selection), unknown keys skipped",
    policies: [{ ...pol("d", "Deny", { principals: ["*"] }), namespace: "data", scope: "WorkloadSelector" }],
    conn: conn({ destination: { ...db, authorizationPolicies: ["data/d", "data/unknown"] } }),
    allow: false,
    policy: "data/d",
  },
  {
    name: "a fail-closed destination is denied whatever the policies",
    policies: [],
    conn: conn({ destination: { ...echo, failClosed: "must go through waypoint w" } }),
    allow: false,
    policy: undefined,
  },
  // Dry run and audit
  { name: "dry-run Deny is not enforced", policies: [pol("d", "Deny", { principals: ["*"] }, { dryRun: true })], conn: conn(), allow: true },
  { name: "dry-run Allow does not create allow-list mode", policies: [pol("a", "Allow", { namespaces: ["x"] }, { dryRun: true })], conn: conn(), allow: true },
];

describe("authorization policy matrix", () => {
  it("has at least 30 cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });
  for (const c of cases) {
    it(c.name, () => {
      const d = compile(c.policies).evaluate(c.conn);
      expect(d.allow).toBe(c.allow);
      if ("policy" in c) expect(d.policy).toBe(c.policy);
      expect(d.reason.length).toBeGreaterThan(0);
    });
  }
});

describe("decisions and reasons", () => {
  it("returns the shared constants when no policy decides", () => {
    expect(compile([]).evaluate(conn())).toBe(NO_POLICIES);
    expect(compile([pol("d", "Deny", { namespaces: ["x"] })]).evaluate(conn())).toBe(NO_ALLOW_POLICIES);
    expect(compile([pol("a", "Allow", { namespaces: ["x"] })]).evaluate(conn())).toBe(NOT_ALLOWED);
  });

  it("names the deny policy in the reason (the 401 body)", () => {
    const d = compile([pol("require-mtls", "Deny", { notPrincipals: ["*"] })]).evaluate(conn({ id: null }));
    expect(d).toMatchObject({ allow: false, policy: "default/require-mtls" });
    expect(d.reason).toContain("default/require-mtls");
  });

  it("is the same object for repeated evaluations (no per-connection allocation of decisions)", () => {
    const e = compile([pol("a", "Allow", { principals: ["*"] })]);
    expect(e.evaluate(conn())).toBe(e.evaluate(conn({ sourceIp: "10.9.9.9" })));
  });

  it("reports what dry-run policies would have done, combined with the enforced ones", () => {
    const e = compile([pol("a", "Allow", { principals: ["*"] }), pol("dry-deny", "Deny", { namespaces: ["default"] }, { dryRun: true })]);
    const d = e.evaluate(conn());
    expect(d.allow).toBe(true);
    expect(d.policy).toBe("default/a");
    expect(d.dryRun).toMatchObject({ allow: false, policy: "default/dry-deny" });
    const plain = e.evaluate(conn({ id: other }));
    expect(plain.allow).toBe(true);
    expect(plain.dryRun).toMatchObject({ allow: true, policy: "default/a" });
  });

  it("dry-run Allow reports the allow-list it would create", () => {
    const d = compile([pol("a", "Allow", { namespaces: ["x"] }, { dryRun: true })]).evaluate(conn());
    expect(d.allow).toBe(true);
    expect(d.dryRun).toMatchObject({ allow: false, policy: undefined });
  });

  it("has no dryRun field without dry-run policies", () => {
    expect(compile([pol("a", "Allow", { principals: ["*"] })]).evaluate(conn()).dryRun).toBeUndefined();
  });
});

describe("index", () => {
  const policies: RawPolicy[] = [
    { ...pol("g", "Deny", { namespaces: ["evil"] }), namespace: "istio-system", scope: "Global" },
    pol("ns", "Allow", { principals: ["*"] }),
    { ...pol("sel", "Deny", { destinationPorts: [22] }), scope: "WorkloadSelector" },
    { ...pol("other-ns", "Deny", {}), namespace: "data" },
    pol("dry", "Deny", { principals: ["*"] }, { dryRun: true }),
  ];
  const e = compile(policies);

  it("applies Global + Namespace + selecting WorkloadSelector policies", () => {
    expect(e.applicableTo({ namespace: "default", authorizationPolicies: ["default/sel"] }).sort()).toEqual(["default/dry", "default/ns", "default/sel", "istio-system/g"]);
    expect(e.applicableTo(echo).sort()).toEqual(["default/dry", "default/ns", "istio-system/g"]);
    expect(e.applicableTo({ namespace: "empty", authorizationPolicies: [] })).toEqual(["istio-system/g"]);
  });

  it("counts by kind", () => {
    expect(e.stats).toEqual({ policies: 5, global: 1, namespace: 3, workloadSelector: 1, dryRun: 1 });
  });

  it("follows a changed workload object rather than a stale cache entry", () => {
    const w1 = { namespace: "default", authorizationPolicies: ["default/sel"] };
    expect(e.applicableTo(w1)).toContain("default/sel");
    const w2 = { ...w1, authorizationPolicies: [] };
    expect(e.applicableTo(w2)).not.toContain("default/sel");
  });
});

describe("recheck", () => {
  it("returns exactly the open connections the new policies deny", () => {
    const open = [
      { ...conn(), tag: "mtls-8080" },
      { ...conn({ id: null }), tag: "plain-8080" },
      { ...conn({ destinationPort: 22 }), tag: "mtls-22" },
      { ...conn({ id: null, destination: db }), tag: "plain-db" },
    ];
    expect(recheck(compile([]), open, (c) => c)).toEqual([]);
    const tightened = recheck(compile([pol("require-mtls", "Deny", { notPrincipals: ["*"] }), pol("ports", "Allow", { destinationPorts: [8080] })]), open, (c) => c);
    expect(tightened.map((r) => r.connection.tag)).toEqual(["plain-8080", "mtls-22"]);
    expect(tightened[0]?.decision.policy).toBe("default/require-mtls");
    expect(tightened[1]?.decision).toBe(NOT_ALLOWED);
  });

  it("skips connections whose input is gone", () => {
    const engine = compile([pol("d", "Deny", { principals: ["*"] })]);
    expect(recheck(engine, [conn(), undefined], (c) => c)).toHaveLength(1);
  });
});

describe("validation where policies enter", () => {
  it("rejects invalid policies with the field path", () => {
    expect(() => parsePolicies([pol("d", "Deny", { principals: ["a*b"] })])).toThrow(AuthzPolicyError);
    expect(() => parsePolicies([pol("d", "Deny", { principals: ["a*b"] })])).toThrow(/policies\[0\]\.rules\[0\]\[0\]\[0\]\.principals\[0\]/);
  });

  it("reports Audit as unsupported instead of accepting it silently", () => {
    expect(() => parsePolicies([pol("au", "Audit", { principals: ["*"] })])).toThrow(/Audit is not supported/);
  });
});

describe("state compatibility", () => {
  it("evaluates the policies of the local config fixture as the state parses them", () => {
    const state = parseLocalConfig(readFileSync(new URL("../fixtures/ztunnel-local-config.yaml", import.meta.url), "utf8"));
    // The state holds the one model: no second validation, straight into the engine.
    const e = AuthzEngine.compile(state.policies);
    const echoA = state.workloads.find((w) => w.name === "echo-a");
    expect(echoA).toBeDefined();
    if (echoA === undefined) return;
    const base = { sourceIp: "10.0.0.2", destinationIp: "10.0.0.1", destinationPort: 8080, destination: echoA };
    expect(e.evaluate({ ...base, sourceIdentity: sleep }).allow).toBe(true);
    expect(e.evaluate({ ...base, sourceIdentity: undefined })).toMatchObject({ allow: false, policy: "default/require-mtls" });
    expect(e.evaluate({ ...base, sourceIdentity: sleep, destinationPort: 22 })).toBe(NOT_ALLOWED);
    expect(e.evaluate({ ...base, sourceIdentity: sleep, sourceIp: "192.168.0.1" })).toBe(NOT_ALLOWED);
  });
});
