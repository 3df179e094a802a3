import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { fetchPodAndNamespace } from "../../cni-plugin/kube/client.js";
import { EnrollmentController } from "../../src/agent/enroll/controller.js";
import { KubeSource } from "../../src/agent/enroll/kube-source.js";
import { PodLifecycle } from "../../src/agent/enroll/lifecycle.js";
import { REDIRECTION_ANNOTATION, type PodView } from "../../src/agent/enroll/model.js";
import { KubeStateSource } from "../../src/ztunnel/cluster/kube-source.js";
import type { StateData } from "../../src/ztunnel/state/types.js";
import { FakeKubeServer, kubeConfigFor, rbacUsage, rbacUsesOf, type KubeObjectInput, type RbacUse } from "../harness/fake-kube/index.js";
import { FakeHost, FakeOpener, FakeRedirector, FakeRef, FakeZds, StepLog } from "../fixtures/agent-fakes.js";

// RBAC in deploy/ grants exactly what the code calls: the agent's enrollment source, the CNI
// plugin's API reads (it runs with the agent's token) and ztunnel's cluster source run against
// the fake API server, which records each request as RBAC sees it; the recorded
// {apiGroup, resource, verbs} must equal the ClusterRole's rules, no more, no less.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const NODE = "node-a";
const AMBIENT = { "istio.io/dataplane-mode": "ambient" };

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  nonResourceURLs?: string[];
  resourceNames?: string[];
}

/** A ClusterRole's rules flattened to one entry per (apiGroup, resource), verbs sorted. */
function granted(file: string, role: string): RbacUse[] {
  const docs = parseAllDocuments(readFileSync(join(ROOT, "deploy", "base", file), "utf8")).map((d) => d.toJS() as { kind: string; metadata: { name: string }; rules?: Rule[] });
  const cr = docs.find((d) => d.kind === "ClusterRole" && d.metadata.name === role);
  if (!cr) throw new Error(`no ClusterRole ${role} in deploy/base/${file}`);
  const m = new Map<string, Set<string>>();
  for (const r of cr.rules ?? []) {
    // Wildcards, resourceNames and non-resource URLs would make the comparison meaningless.
    expect(r.nonResourceURLs).toBeUndefined();
    expect(r.resourceNames).toBeUndefined();
    for (const g of r.apiGroups ?? []) {
      for (const res of r.resources ?? []) {
        expect([g, res, ...r.verbs]).not.toContain("*");
        const key = `${g}|${res}`;
        const verbs = m.get(key) ?? new Set<string>();
        for (const v of r.verbs) verbs.add(v);
        m.set(key, verbs);
      }
    }
  }
  return rbacUsesOf(m);
}

function pod(name: string, ns: string, ip: string, node = NODE): KubeObjectInput {
  return {
    metadata: { name, namespace: ns, labels: {} },
    spec: { nodeName: node, serviceAccountName: `${name}-sa`, containers: [{ name: "app", image: "x" }] },
    status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
  };
}

function label(server: FakeKubeServer, ns: string, labels: Record<string, string>): void {
  server.store.mutate("namespaces", ns, undefined, (o) => {
    (o.metadata as { labels?: Record<string, string> }).labels = { ...labels };
  });
}

describe("RBAC of deploy/ against the calls the code makes (fake API server)", () => {
  let server: FakeKubeServer;

  beforeEach(async () => {
    server = await FakeKubeServer.start();
    server.store.create("namespaces", { metadata: { name: "mesh" } });
    server.store.create("namespaces", { metadata: { name: "istio-system" } });
    server.store.create("pods", pod("web", "mesh", "10.0.0.2"));
    server.store.create("pods", pod("db", "mesh", "10.0.0.3"));
    server.store.create("pods", pod("remote", "mesh", "10.0.1.2", "node-b"));
  });

  afterEach(async () => {
    await server.stop();
  });

  it("istio-cni-node's ClusterRole = what the agent (enroll, annotate, lookup, unenroll) and the plugin call", async () => {
    const log = new StepLog();
    const running = new Set<string>();
    for (const p of server.store.list("pods") as { metadata: { uid: string } }[]) running.add(p.metadata.uid);
    const source = new KubeSource({ kubeConfig: kubeConfigFor(server), nodeName: NODE, restartBaseMs: 20, restartMaxMs: 100 });
    const lifecycle = new PodLifecycle({
      zds: new FakeZds(log),
      redirector: new FakeRedirector(log),
      host: new FakeHost(log),
      opener: new FakeOpener(),
      annotate: (p, s) => source.setRedirection(p, s),
      addrsIn: async () => [],
    });
    const controller = new EnrollmentController(
      {
        source,
        lifecycle,
        findNetns: async (p: PodView) => (running.has(p.uid) ? { ref: new FakeRef(p.uid), origin: `/proc/1/ns/net#${p.name}` } : undefined),
      },
      { decide: { excludeNamespaces: ["kube-system"], agentNamespace: "istio-system" }, retryBaseMs: 20, retryMaxMs: 200, concurrency: 2 },
    );
    const annotation = (name: string): string | undefined =>
      (server.store.get("pods", name, "mesh") as { metadata: { annotations?: Record<string, string> } } | undefined)?.metadata.annotations?.[REDIRECTION_ANNOTATION];
    try {
      await controller.start();
      label(server, "mesh", AMBIENT); // enroll → annotate pods/status
      await expect.poll(() => [annotation("web"), annotation("db")], { timeout: 5000 }).toEqual(["enabled", "enabled"]);
      // A pod the cache has not seen yet (the CNI ADD path) is read directly.
      server.holdWatches();
      server.dropWatches();
      server.store.create("pods", pod("fresh", "mesh", "10.0.0.4"));
      expect(await source.lookup("mesh", "fresh")).toMatchObject({ name: "fresh" });
      server.releaseWatches();
      label(server, "mesh", {}); // unenroll → annotation removed
      await expect.poll(() => [annotation("web"), annotation("db")], { timeout: 5000 }).toEqual([undefined, undefined]);
    } finally {
      await controller.stop();
    }
    // The plugin's two reads on CNI ADD, with the agent's token (the kubeconfig it is given).
    const facts = await fetchPodAndNamespace({ server: server.url, token: server.token!, ca: undefined, insecureSkipTlsVerify: true }, "mesh", "web");
    expect(facts.pod.labels).toEqual({});

    expect(server.requests.filter((r) => r.resource === undefined).map((r) => r.path)).toEqual([]);
    expect(server.requests.filter((r) => r.status === 401 || r.status === 403)).toEqual([]);
    const used = rbacUsage(server.requests);
    // Sanity: the scenario exercised every kind of call the code has.
    expect(used).toContainEqual({ apiGroup: "", resource: "pods/status", verbs: ["patch"] });
    expect(granted("cni-node-rbac.yaml", "cni-node")).toEqual(used);
  });

  it("ztunnel's ClusterRole = what its cluster state source calls", async () => {
    server.store.create("services", {
      metadata: { name: "web", namespace: "mesh" },
      spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: 8080, protocol: "TCP" }] },
    });
    server.store.create("endpointslices", {
      metadata: { name: "web-1", namespace: "mesh", labels: { "kubernetes.io/service-name": "web" } },
      addressType: "IPv4",
      endpoints: [{ addresses: ["10.0.0.2"], conditions: { ready: true } }],
      ports: [{ port: 8080, protocol: "TCP" }],
    });
    const states: StateData[] = [];
    const source = new KubeStateSource({ kubeConfig: kubeConfigFor(server), trustDomain: "cluster.local", debounceMs: 10, maxDelayMs: 50, restartBaseMs: 20, restartMaxMs: 100 });
    try {
      await source.start({ replace: (data) => states.push(data) });
      expect(states.length).toBeGreaterThanOrEqual(1);
      // A change and a broken watch: the informers re-watch; still only list/watch.
      const since = states.length;
      label(server, "mesh", AMBIENT);
      server.store.create("pods", pod("api", "mesh", "10.0.0.9"));
      await expect.poll(() => states.length, { timeout: 5000 }).toBeGreaterThan(since);
      server.dropWatches();
      await server.waitForWatches(4, { timeoutMs: 5000 });
    } finally {
      await source.close();
    }
    expect(server.requests.filter((r) => r.resource === undefined).map((r) => r.path)).toEqual([]);
    expect(server.requests.filter((r) => r.status === 401 || r.status === 403)).toEqual([]);
    const used = rbacUsage(server.requests);
    expect(used.map((u) => u.resource).sort()).toEqual(["authorizationpolicies", "endpointslices", "namespaces", "peerauthentications", "pods", "services"]);
    expect(granted("ztunnel-rbac.yaml", "ztunnel")).toEqual(used);
  });

  it("the comparison fails when a rule grants a verb the code never uses", () => {
    const used: RbacUse[] = [{ apiGroup: "", resource: "pods", verbs: ["list", "watch"] }];
    expect(granted("cni-node-rbac.yaml", "cni-node")).not.toEqual(used);
  });
});
