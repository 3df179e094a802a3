import type { V1Pod } from "@kubernetes/client-node";
import fc from "fast-check";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { AuthzEngine, compilePolicies, type ConnectionInfo } from "../../src/ztunnel/authz/index.js";
import type { KubeAuthorizationPolicy } from "../../src/ztunnel/cluster/authz-translate.js";
import { buildState } from "../../src/ztunnel/cluster/model.js";
import type { KubePeerAuthentication } from "../../src/ztunnel/cluster/peer-authn.js";
import { parseLocalConfig } from "../../src/ztunnel/state/local-config.js";
import { WorkloadStore } from "../../src/ztunnel/state/store.js";
import type { StateData, Workload } from "../../src/ztunnel/state/types.js";
import { makeIdentity } from "../../src/ztunnel/tls/identity.js";
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, encodeAs, xdsTypes } from "../../src/ztunnel/xds/proto.js";
import { XdsResources } from "../../src/ztunnel/xds/xds-source.js";
import { policySet, selectedKeys, toKube, toLocal, toXds, type LogicalSet } from "../fixtures/policy-logical-sets.js";
import { workloadAddress } from "../harness/fake-istiod/index.js";

// Kubernetes mode's policies (issue 15 item 3): Istio's AuthorizationPolicy and
// PeerAuthentication become the one model as istiod translates them for ztunnel; L7 and CUSTOM
// never fail open and are reported; the same logical policy from the local file and from the
// Kubernetes API compiles to the same thing.

const OPTS = { trustDomain: "cluster.local", clusterDomain: "cluster.local", network: "" };
const client = makeIdentity("cluster.local", "ns-a", "client");

function pod(name: string, ns: string, ip: string, labels: Record<string, string>): V1Pod {
  return {
    metadata: { name, namespace: ns, uid: `uid-${name}`, labels },
    spec: { nodeName: "n1", serviceAccountName: `sa-${name}`, containers: [{ name: "c" }] },
    status: { phase: "Running", podIPs: [{ ip }] },
  };
}

const PODS = [pod("web", "ns-a", "10.0.0.1", { app: "web" }), pod("db", "ns-a", "10.0.0.2", { app: "db" }), pod("api", "ns-b", "10.0.0.3", { app: "web" })];

function cluster(aps: KubeAuthorizationPolicy[], pas: KubePeerAuthentication[] = []): StateData {
  return buildState({ pods: PODS, services: [], endpointSlices: [], namespaces: [], authorizationPolicies: aps, peerAuthentications: pas }, OPTS).data;
}

function ap(name: string, ns: string, spec: NonNullable<KubeAuthorizationPolicy["spec"]>, annotations?: Record<string, string>): KubeAuthorizationPolicy {
  return { metadata: { name, namespace: ns, ...(annotations !== undefined ? { annotations } : {}) }, spec };
}

/** The decision for a connection from `client` (or plaintext) to the named workload. */
function decide(data: StateData, to: string, port: number, mtls = true) {
  const w = data.workloads.find((x) => x.name === to);
  if (w === undefined) throw new Error(`no workload ${to}`);
  const conn: ConnectionInfo = { sourceIdentity: mtls ? client : undefined, sourceIp: "10.0.0.9", destinationIp: w.workloadIps[0] ?? "", destinationPort: port, destination: w };
  return AuthzEngine.compile(data.policies).evaluate(conn);
}

describe("AuthorizationPolicy → the model: scopes and selectors", () => {
  it("root namespace without selector is Global, others Namespace, a selector resolves against pod labels", () => {
    const data = cluster([
      ap("mesh", "istio-system", { action: "DENY", rules: [{ to: [{ operation: { ports: ["1"] } }] }] }),
      ap("ns", "ns-a", { action: "DENY", rules: [{ to: [{ operation: { ports: ["2"] } }] }] }),
      ap("sel", "ns-a", { selector: { matchLabels: { app: "web" } }, action: "DENY", rules: [{ to: [{ operation: { ports: ["3"] } }] }] }),
      ap("rootsel", "istio-system", { selector: { matchLabels: { app: "web" } }, action: "DENY", rules: [{ to: [{ operation: { ports: ["4"] } }] }] }),
    ]);
    expect(data.policies.map((p) => [`${p.namespace}/${p.name}`, p.scope])).toEqual([
      ["istio-system/mesh", "Global"],
      ["istio-system/rootsel", "WorkloadSelector"],
      ["ns-a/ns", "Namespace"],
      ["ns-a/sel", "WorkloadSelector"],
    ]);
    expect(data.workloads.map((w) => [w.name, w.authorizationPolicies])).toEqual([
      ["db", []],
      ["web", ["istio-system/rootsel", "ns-a/sel"]],
      ["api", ["istio-system/rootsel"]],
    ].sort((a, b) => `${a[0] === "api" ? "ns-b" : "ns-a"}/${String(a[0])}`.localeCompare(`${b[0] === "api" ? "ns-b" : "ns-a"}/${String(b[0])}`)));
    expect(decide(data, "web", 3).allow).toBe(false);
    expect(decide(data, "db", 3).allow).toBe(true);
    expect(decide(data, "api", 4).allow).toBe(false);
    expect(decide(data, "api", 2).allow).toBe(true);
    expect(decide(data, "api", 1).allow).toBe(false);
  });

  it("from/to/when translate to clauses: sources OR, and every condition AND", () => {
    const data = cluster([
      ap("p", "ns-a", {
        action: "ALLOW",
        rules: [
          {
            from: [{ source: { principals: ["cluster.local/ns/ns-a/sa/client"] } }, { source: { ipBlocks: ["192.168.0.0/16"] } }],
            to: [{ operation: { ports: ["8080"] } }],
            when: [{ key: "destination.ip", values: ["10.0.0.0/24"] }],
          },
        ],
      }),
    ]);
    expect(data.policies[0]?.rules).toEqual([
      [
        [{ principals: [{ kind: "exact", value: "cluster.local/ns/ns-a/sa/client" }] }, { sourceIps: ["192.168.0.0/16"] }],
        [{ destinationPorts: [8080] }],
        [{ destinationIps: ["10.0.0.0/24"] }],
      ],
    ]);
    expect(decide(data, "web", 8080).allow).toBe(true);
    expect(decide(data, "web", 9090).allow).toBe(false);
    expect(decide(data, "web", 8080, false).allow).toBe(false);
  });

  it("istio.io/dry-run is reported, never enforced", () => {
    const data = cluster([ap("d", "ns-a", { action: "DENY", rules: [{}] }, { "istio.io/dry-run": "true" })]);
    const d = decide(data, "web", 80);
    expect(d.allow).toBe(true);
    expect(d.dryRun?.allow).toBe(false);
  });
});

describe("what ztunnel cannot enforce never fails open, and is reported", () => {
  it("ALLOW with methods: [GET] matches nothing: denied", () => {
    const data = cluster([ap("get-only", "ns-a", { action: "ALLOW", rules: [{ to: [{ operation: { methods: ["GET"] } }] }] })]);
    expect(data.policies[0]).toMatchObject({ action: "Allow", rules: [] });
    expect(decide(data, "web", 8080)).toMatchObject({ allow: false });
    expect(data.notices).toEqual([{ object: "AuthorizationPolicy ns-a/get-only", field: "rules[0] to.operation.methods", effect: "translated", reason: expect.stringContaining("matches nothing") }]);
  });

  it("DENY with paths on a port denies the whole port; other ports pass", () => {
    const data = cluster([ap("no-admin", "ns-a", { action: "DENY", rules: [{ to: [{ operation: { ports: ["8080"], paths: ["/admin"] } }] }] })]);
    expect(decide(data, "web", 8080)).toMatchObject({ allow: false, policy: "ns-a/no-admin" });
    expect(decide(data, "web", 9090).allow).toBe(true);
    expect(data.notices[0]).toMatchObject({ field: "rules[0] to.operation.paths", effect: "translated", reason: expect.stringContaining("L4 conditions alone") });
  });

  it("DENY with only L7 conditions denies every port; an L7 `when` is dropped from a DENY", () => {
    const data = cluster([
      ap("paths", "ns-a", { action: "DENY", rules: [{ to: [{ operation: { paths: ["/x"] } }] }] }),
      ap("hdr", "ns-b", { action: "DENY", rules: [{ from: [{ source: { namespaces: ["ns-a"] } }], when: [{ key: "request.headers[x-evil]", values: ["1"] }] }] }),
    ]);
    expect(decide(data, "web", 1).allow).toBe(false);
    expect(decide(data, "api", 1)).toMatchObject({ allow: false, policy: "ns-b/hdr" });
    expect(data.notices.map((n) => n.field)).toEqual(["rules[0] to.operation.paths", "rules[0] when request.headers[x-evil]"]);
  });

  it("ALLOW with requestPrincipals drops that rule only", () => {
    const data = cluster([ap("mixed", "ns-a", { action: "ALLOW", rules: [{ from: [{ source: { requestPrincipals: ["*"] } }] }, { to: [{ operation: { ports: ["9090"] } }] }] })]);
    expect(decide(data, "web", 8080).allow).toBe(false);
    expect(decide(data, "web", 9090).allow).toBe(true);
  });

  it("CUSTOM denies everything it applies to; AUDIT and targetRefs are dropped; each reported", () => {
    const data = cluster([
      ap("ext", "ns-a", { selector: { matchLabels: { app: "db" } }, action: "CUSTOM", provider: { name: "opa" }, rules: [{ to: [{ operation: { paths: ["/x"] } }] }] }),
      ap("audit", "ns-a", { action: "AUDIT", rules: [{}] }),
      ap("gw", "ns-a", { targetRefs: [{ kind: "Service", group: "", name: "web" }], action: "DENY", rules: [{}] }),
    ]);
    expect(decide(data, "db", 80)).toMatchObject({ allow: false, policy: "ns-a/ext" });
    expect(decide(data, "web", 80).allow).toBe(true);
    expect(data.notices.map((n) => [n.object, n.field, n.effect])).toEqual([
      ["AuthorizationPolicy ns-a/ext", "action", "translated"],
      ["AuthorizationPolicy ns-a/audit", "action", "dropped"],
      ["AuthorizationPolicy ns-a/gw", "targetRefs", "not-enforced"],
    ]);
  });

  it("a value ztunnel cannot parse: the ALLOW rule matches nothing, the DENY rule denies everything", () => {
    const data = cluster([
      ap("a", "ns-a", { action: "ALLOW", rules: [{ from: [{ source: { ipBlocks: ["10.0.0.0/99"] } }] }] }),
      ap("d", "ns-b", { action: "DENY", rules: [{ from: [{ source: { principals: ["a*b"] } }] }] }),
    ]);
    expect(decide(data, "web", 80).allow).toBe(false);
    expect(decide(data, "api", 80)).toMatchObject({ allow: false, policy: "ns-b/d" });
    expect(data.notices).toHaveLength(2);
  });
});

describe("PeerAuthentication", () => {
  const pa = (name: string, ns: string, spec: NonNullable<KubePeerAuthentication["spec"]>): KubePeerAuthentication => ({ metadata: { name, namespace: ns }, spec });

  it("STRICT denies plaintext to the selected workloads; mTLS passes", () => {
    const data = cluster([], [pa("strict", "ns-a", { mtls: { mode: "STRICT" } })]);
    expect(decide(data, "web", 8080, false).allow).toBe(false);
    expect(decide(data, "web", 8080, true).allow).toBe(true);
    expect(decide(data, "api", 8080, false).allow).toBe(true);
  });

  it("precedence: workload over namespace over mesh; UNSET inherits; portLevelMtls per port", () => {
    const data = cluster(
      [],
      [
        pa("mesh", "istio-system", { mtls: { mode: "STRICT" } }),
        pa("ns", "ns-a", { mtls: { mode: "PERMISSIVE" } }),
        pa("db", "ns-a", { selector: { matchLabels: { app: "db" } }, mtls: { mode: "UNSET" }, portLevelMtls: { "5432": { mode: "STRICT" } } }),
      ],
    );
    expect(decide(data, "api", 80, false).allow).toBe(false); // mesh STRICT
    expect(decide(data, "web", 80, false).allow).toBe(true); // namespace PERMISSIVE
    expect(decide(data, "db", 80, false).allow).toBe(true); // inherits PERMISSIVE
    expect(decide(data, "db", 5432, false).allow).toBe(false); // port STRICT
    const strictExcept = cluster([], [pa("db", "ns-a", { selector: { matchLabels: { app: "db" } }, mtls: { mode: "STRICT" }, portLevelMtls: { "9000": { mode: "PERMISSIVE" } } })]);
    expect(decide(strictExcept, "db", 80, false).allow).toBe(false);
    expect(decide(strictExcept, "db", 9000, false).allow).toBe(true);
  });
});

// ---- the same logical policies from both sources ------------------------------------------

const WORKLOAD_LABELS = { web: { app: "web" }, db: { app: "db" }, api: { app: "web" } } as const;

function localFile(ps: LogicalSet[]): string {
  const workloads = PODS.map((p) => ({
    uid: p.metadata?.uid,
    name: p.metadata?.name,
    namespace: p.metadata?.namespace,
    serviceAccount: p.spec?.serviceAccountName,
    workloadIps: [p.status?.podIPs?.[0]?.ip],
    node: "n1",
    labels: WORKLOAD_LABELS[p.metadata?.name as keyof typeof WORKLOAD_LABELS],
  }));
  return stringify({ workloads, policies: ps.map(toLocal) });
}

const selectedBy = (ws: readonly Workload[]) => Object.fromEntries(ws.map((w) => [w.name, w.authorizationPolicies]));

/** The state istiod's xDS makes of the set: Address and Authorization resources through the real client code (wire bytes). */
function fromXds(ps: LogicalSet[]): StateData {
  let data: StateData | undefined;
  const resources = new XdsResources({ replace: (d) => (data = d) }, "property", pino({ level: "silent" }));
  const respond = (typeUrl: string, items: Array<{ name: string; bytes: Buffer }>): void => {
    const rejected = resources.apply({ typeUrl, nonce: "1", systemVersionInfo: "", removed: [], resources: items.map((i) => ({ name: i.name, version: "1", typeUrl, value: i.bytes })) });
    expect(rejected).toEqual([]);
  };
  respond(
    ADDRESS_TYPE_URL,
    PODS.map((p) => {
      const name = p.metadata?.name ?? "";
      const namespace = p.metadata?.namespace ?? "";
      const labels = WORKLOAD_LABELS[name as keyof typeof WORKLOAD_LABELS];
      const uid = `uid-${name}`;
      const address = workloadAddress({ uid, name, namespace, serviceAccount: `sa-${name}`, ips: [p.status?.podIPs?.[0]?.ip ?? ""], node: "n1", authorizationPolicies: selectedKeys(ps, { namespace, labels }) });
      return { name: uid, bytes: encodeAs(xdsTypes().address, address) };
    }),
  );
  respond(
    AUTHORIZATION_TYPE_URL,
    ps.map((p) => ({ name: `${p.namespace}/${p.name}`, bytes: encodeAs(xdsTypes().authorization, toXds(p)) })),
  );
  if (data === undefined) throw new Error("the xDS client published no state");
  return data;
}

/**
 * The one textual difference: a policy written by hand keeps an address as written ("10.0.0.1"),
 * xDS carries bytes and a prefix length, so a host route reads "10.0.0.1/32". Same words, same
 * masks; only the text for messages and dumps differs, and that is all this erases.
 */
function hostRoutesBare<T>(x: T): T {
  return JSON.parse(JSON.stringify(x, (_k, v: unknown) => (typeof v === "string" ? v.replace(/^([0-9.]+)\/32$|^([0-9a-f:]+)\/128$/, "$1$2") : v))) as T;
}

describe("one logical policy set, three sources, one compiled result (property)", () => {
  it("the local file, the Kubernetes translation and istiod's xDS compile identically and select the same workloads", () => {
    fc.assert(
      fc.property(policySet, (ps) => {
        const fromKube = cluster(ps.map(toKube));
        const fromFile = parseLocalConfig(localFile(ps), "generated.yaml");
        const viaXds = fromXds(ps);
        expect(fromKube.notices).toEqual([]);
        expect(viaXds.notices.filter((n) => n.object.includes("Authorization"))).toEqual([]);
        const byKey = (d: StateData) => compilePolicies(d.policies).sort((a, b) => a.key.localeCompare(b.key));
        expect(byKey(fromFile)).toEqual(byKey(fromKube));
        expect(hostRoutesBare(byKey(viaXds))).toEqual(hostRoutesBare(byKey(fromKube)));
        expect(selectedBy(fromFile.workloads)).toEqual(selectedBy(fromKube.workloads));
        expect(selectedBy(viaXds.workloads)).toEqual(selectedBy(fromKube.workloads));
      }),
      { numRuns: 200 },
    );
  });

  it("the xDS path is exercised: a selector policy and an IPv6 block arrive as sent", () => {
    const ps: LogicalSet[] = [{ name: "p0", namespace: "ns-a", selector: "web", action: "DENY", dryRun: false, rules: [{ from: [{ ipBlocks: ["fd00::/8"], namespaces: ["ns-*"] }] }] }];
    const viaXds = fromXds(ps);
    expect(selectedBy(viaXds.workloads)).toEqual({ web: ["ns-a/p0"], db: [], api: [] });
    expect(viaXds.policies).toEqual([
      { name: "p0", namespace: "ns-a", scope: "WorkloadSelector", action: "Deny", dryRun: false, rules: [[[{ namespaces: [{ kind: "prefix", value: "ns-" }], sourceIps: ["fd00::/8"] }]]] },
    ]);
  });
});

describe("Istio's use-waypoint labels change where traffic must go: fail closed", () => {
  it("a pod, a namespace or a service labelled istio.io/use-waypoint is refused with the reason; `none` opts out", () => {
    const labelled = (name: string, ns: string, ip: string, labels: Record<string, string>): V1Pod => pod(name, ns, ip, labels);
    const { data } = buildState(
      {
        pods: [labelled("w1", "ns-a", "10.0.1.1", { "istio.io/use-waypoint": "wp" }), labelled("w2", "ns-b", "10.0.1.2", {}), labelled("w3", "ns-b", "10.0.1.3", { "istio.io/use-waypoint": "none" })],
        services: [{ metadata: { name: "s", namespace: "ns-a", labels: { "istio.io/use-waypoint": "swp", "istio.io/use-waypoint-namespace": "gw" } }, spec: { clusterIP: "10.96.0.1", ports: [{ port: 80 }] } }],
        endpointSlices: [],
        namespaces: [{ metadata: { name: "ns-b", labels: { "istio.io/use-waypoint": "nswp" } } }],
      },
      OPTS,
    );
    const store = new WorkloadStore();
    store.replace(data, "test");
    const w = (name: string) => store.state.workloads.find((x) => x.name === name);
    expect(w("w1")?.failClosed).toMatch(/waypoint ns-a\/wp\.ns-a\.svc\.cluster\.local/);
    expect(w("w2")?.failClosed).toMatch(/waypoint ns-b\/nswp\.ns-b\.svc\.cluster\.local/);
    expect(w("w3")?.failClosed).toBeUndefined();
    expect(store.serviceByVip("10.96.0.1")?.failClosed).toMatch(/waypoint gw\/swp\.gw\.svc\.cluster\.local/);
    expect(store.state.notices.filter((n) => n.effect === "fails-closed").map((n) => n.object).sort()).toEqual(["service ns-a/s.ns-a.svc.cluster.local", "workload ns-a/w1", "workload ns-b/w2"]);
  });
});

describe("Service fields kube-proxy would act on are reported or fail closed", () => {
  it("ExternalName and ClientIP affinity are reported; internalTrafficPolicy Local fails closed", () => {
    const { data } = buildState(
      {
        pods: [],
        services: [
          { metadata: { name: "ext", namespace: "ns-a" }, spec: { type: "ExternalName", externalName: "example.com" } },
          { metadata: { name: "sticky", namespace: "ns-a" }, spec: { clusterIP: "10.96.0.2", sessionAffinity: "ClientIP", ports: [{ port: 80 }] } },
          { metadata: { name: "local", namespace: "ns-a" }, spec: { clusterIP: "10.96.0.3", internalTrafficPolicy: "Local", ports: [{ port: 80 }] } },
        ],
        endpointSlices: [],
        namespaces: [],
      },
      OPTS,
    );
    const store = new WorkloadStore();
    store.replace(data, "test");
    expect(store.state.notices.map((n) => [n.object, n.field, n.effect])).toEqual([
      ["service ns-a/ext", "spec.type", "not-enforced"],
      ["service ns-a/sticky", "spec.sessionAffinity", "not-enforced"],
      ["service ns-a/local.ns-a.svc.cluster.local", "internalTrafficPolicy", "fails-closed"],
    ]);
    expect(store.serviceByVip("10.96.0.3")?.failClosed).toMatch(/internalTrafficPolicy: Local/);
    expect(store.serviceByVip("10.96.0.2")?.failClosed).toBeUndefined();
  });
});
