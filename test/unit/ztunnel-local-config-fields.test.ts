import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { AuthzEngine } from "../../src/ztunnel/authz/index.js";
import { LocalConfigError, parseLocalConfig } from "../../src/ztunnel/state/local-config.js";
import { WorkloadStore } from "../../src/ztunnel/state/store.js";
import { routeOutbound } from "../../src/ztunnel/worker/outbound-route.js";
import { makeIdentity } from "../../src/ztunnel/tls/identity.js";

// Issue 21 item 7 / issue 15 items 2 and 4: Istio's own local config loads unchanged; every
// field of Istio's LocalConfig is honoured, reported, or fails closed; selectors resolve
// against labels at load into `authorizationPolicies`.

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), "utf8");
const peer = makeIdentity("cluster.local", "shop", "web");

function errorOf(yaml: string): LocalConfigError {
  try {
    parseLocalConfig(yaml, "local.yaml");
  } catch (err) {
    if (err instanceof LocalConfigError) return err;
    throw err;
  }
  throw new Error("expected a LocalConfigError");
}

describe("istio/ztunnel examples/localhost.yaml", () => {
  it("loads unchanged: workloads, services (with networks), the policy, and what is not acted on", () => {
    const data = parseLocalConfig(fixture("istio-ztunnel-localhost.yaml"), "localhost.yaml");
    expect(data.workloads.map((w) => [w.uid, w.protocol, w.workloadIps])).toEqual([
      ["cluster1//v1/Pod/default/local", "HBONE", ["127.0.0.1"]],
      ["cluster1//v1/Pod/default/local-tcp", "TCP", ["127.0.0.2"]],
    ]);
    expect(data.services.map((s) => s.vips)).toEqual([[{ network: "", address: "127.10.0.1" }], [{ network: "remote", address: "127.10.0.2" }]]);
    expect(data.policies).toEqual([
      { name: "deny-9999", namespace: "default", scope: "Namespace", action: "Allow", dryRun: false, rules: [[[{ notDestinationPorts: [9999] }]]] },
    ]);
    expect(data.notices).toEqual([
      { object: "service default/example.com", field: "subjectAltNames", effect: "not-enforced", reason: expect.stringContaining("endpoint workload") },
    ]);
    // It is enforced as written: port 9999 is not allowed, others are.
    const store = new WorkloadStore();
    store.replace(data, "localhost.yaml");
    const local = store.workloadByIp("127.0.0.1");
    if (local === undefined) throw new Error("no workload for 127.0.0.1");
    const e = AuthzEngine.compile(store.state.policies);
    const c = { sourceIdentity: peer, sourceIp: "127.0.0.2", destinationIp: "127.0.0.1", destination: local };
    expect(e.evaluate({ ...c, destinationPort: 8080 }).allow).toBe(true);
    expect(e.evaluate({ ...c, destinationPort: 9999 }).allow).toBe(false);
    expect(store.serviceTarget("127.10.0.1", 80)?.endpoints.map((x) => x.port)).toEqual([8080, 8080]);
  });
});

describe("every LocalConfig field is honoured, reported or fails closed", () => {
  const data = parseLocalConfig(fixture("ztunnel-local-config-all-fields.yaml"), "all.yaml");
  const store = new WorkloadStore();
  store.replace(data, "all.yaml");
  const by = (name: string) => store.state.workloads.find((w) => w.name === name);

  it("reports each field it does not act on, once per object and field", () => {
    const web = store.state.notices.filter((n) => n.object === "workload shop/web").map((n) => n.field);
    expect(web.sort()).toEqual(
      ["applicationTunnel", "canonicalName", "canonicalRevision", "capacity", "clusterId", "locality", "nativeTunnel", "networkMode", "workloadName", "workloadType"].sort(),
    );
    const svc = store.state.notices.filter((n) => n.object === "service shop/web.shop.svc.cluster.local").map((n) => n.field);
    expect(svc.sort()).toEqual(['endpoints["cluster1//v1/Pod/shop/db"].status', "canonical", "loadBalancer", "subjectAltNames"].sort());
    for (const n of store.state.notices) expect(n.reason.length).toBeGreaterThan(10);
  });

  it("fails closed on fields that change where traffic goes: waypoint, network gateway, strict load balancing", () => {
    const closed = store.state.notices.filter((n) => n.effect === "fails-closed").map((n) => `${n.object} ${n.field}`);
    expect(closed.sort()).toEqual(
      [
        "workload shop/db waypoint",
        "workload remote/api networkGateway",
        "service shop/pinned.shop.svc.cluster.local loadBalancer.mode",
        "service shop/via-waypoint.shop.svc.cluster.local waypoint",
      ].sort(),
    );
    expect(by("db")?.failClosed).toMatch(/waypoint 10\.1\.0\.99.*refused/);
    expect(by("web")?.failClosed).toBeUndefined();
    // Outbound to them is refused, with the reason.
    const refused = (ip: string, port: number) => {
      const plan = routeOutbound({ store, dst: { ip, port } });
      return plan.t === "refuse" ? plan.error.message : plan.t;
    };
    expect(refused("10.1.0.11", 5432)).toMatch(/waypoint/);
    expect(by("api")?.failClosed).toMatch(/gateway istio-system\/eastwest.*refused/);
    // On another network, but its IP is not reached directly either (no gateway bypass).
    expect(refused("10.9.0.5", 80)).toMatch(/gateway istio-system\/eastwest/);
    expect(refused("10.96.1.2", 80)).toMatch(/Strict/);
    expect(refused("10.96.1.3", 80)).toMatch(/waypoint shop\/waypoint/);
    expect(refused("10.1.0.10", 8080)).toBe("hbone");
    // Inbound to them is denied by the engine, whatever the policies.
    const e = AuthzEngine.compile(store.state.policies);
    const db = by("db");
    if (db === undefined) throw new Error("no db");
    expect(e.evaluate({ sourceIdentity: peer, sourceIp: "10.1.0.10", destinationIp: "10.1.0.11", destinationPort: 5432, destination: db })).toMatchObject({ allow: false, reason: expect.stringMatching(/waypoint/) });
  });

  it("honours labels, authorizationPolicies, selectors and service endpoints", () => {
    expect(by("web")?.labels).toEqual({ app: "web", tier: "front" });
    expect(by("web")?.authorizationPolicies).toEqual(["shop/listed"]);
    expect(by("db")?.authorizationPolicies).toEqual(["shop/by-label"]);
    expect(by("api")?.authorizationPolicies).toEqual([]);
    // The service's endpoints entry made db a member with its own target port.
    expect(by("db")?.services).toEqual({ "shop/web.shop.svc.cluster.local": { "80": 5432 } });
  });
});

describe("selectors and authorizationPolicies in the local file", () => {
  const yaml = (policies: string, extra = ""): string => `
workloads:
  - { name: a, namespace: ns, workloadIps: ["10.0.0.1"], labels: { app: x, v: "1" }${extra} }
  - { name: b, namespace: ns, workloadIps: ["10.0.0.2"], labels: { app: x, v: "2" } }
  - { name: c, namespace: other, workloadIps: ["10.0.0.3"], labels: { app: x, v: "1" } }
policies:
${policies}`;

  it("a selector selects by every label, in its own namespace only", () => {
    const d = parseLocalConfig(yaml(`  - { name: p, namespace: ns, scope: WorkloadSelector, action: Deny, selector: { matchLabels: { app: x, v: "1" } } }`));
    expect(d.workloads.map((w) => [w.name, w.authorizationPolicies])).toEqual([
      ["a", ["ns/p"]],
      ["b", []],
      ["c", []],
    ]);
  });

  it("a selector in the root namespace selects in every namespace", () => {
    const d = parseLocalConfig(yaml(`  - { name: p, namespace: istio-system, scope: WorkloadSelector, selector: { matchLabels: { v: "1" } } }`));
    expect(d.workloads.map((w) => w.authorizationPolicies)).toEqual([["istio-system/p"], [], ["istio-system/p"]]);
  });

  it("a WorkloadSelector policy without selector applies only where listed", () => {
    const d = parseLocalConfig(yaml(`  - { name: p, namespace: ns, scope: WorkloadSelector }`, `, authorizationPolicies: ["ns/p"]`));
    expect(d.workloads.map((w) => w.authorizationPolicies)).toEqual([["ns/p"], [], []]);
  });

  it.each([
    [`  - { name: p, namespace: ns, scope: Namespace, selector: { matchLabels: { app: x } } }`, "", "policies[0].selector: only allowed with scope WorkloadSelector"],
    [`  - { name: p, namespace: ns, scope: WorkloadSelector, selector: { matchLabels: { app: 1 } } }`, "", "policies[0].selector.matchLabels.app: expected a string"],
    [`  - { name: p, namespace: ns, scope: WorkloadSelector, selector: { labels: { app: x } } }`, "", "policies[0].selector.labels: unknown field"],
    [`  - { name: p, namespace: ns }`, `, authorizationPolicies: ["ns/typo"]`, 'workloads[0].authorizationPolicies[0]: no policy "ns/typo" in this file'],
    [`  - { name: p, namespace: ns }`, `, authorizationPolicies: ["typo"]`, 'workloads[0].authorizationPolicies[0]: "typo" is not "namespace/name"'],
    [`  - { name: p, namespace: ns, action: Audit }`, "", "policies[0].action: Audit is not supported"],
    [`  - { name: p, namespace: ns }`, `, waypoint: { destination: "10.0.0.x" }`, 'workloads[0].waypoint.destination: "10.0.0.x" is not an IP address'],
  ])("%s%s → %s", (policies, extra, message) => {
    const err = errorOf(yaml(policies, extra));
    expect(err.message).toContain(`local.yaml: ${message}`);
  });
});

describe("notices are logged once", () => {
  it("warns for each new notice, not again on the next identical state", () => {
    const lines: unknown[] = [];
    const log = { warn: (o: unknown) => void lines.push(o) } as unknown as import("../../src/shared/log.js").Logger;
    const store = new WorkloadStore(Math.random, log);
    const text = fixture("istio-ztunnel-localhost.yaml");
    store.replace(parseLocalConfig(text), "a");
    store.replace(parseLocalConfig(text), "b");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ object: "service default/example.com", field: "subjectAltNames" });
  });
});
