import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitUntil as until } from "../harness/wait.js";
import { stringify } from "yaml";
import { KubeStateSource } from "../../src/ztunnel/cluster/kube-source.js";
import { KubeSyncError } from "../../src/ztunnel/cluster/errors.js";
import { FileStateSource } from "../../src/ztunnel/state/file-source.js";
import { WorkloadStore } from "../../src/ztunnel/state/store.js";
import type { StateData, Workload } from "../../src/ztunnel/state/types.js";
import { FakeKubeServer, kubeConfigFor, type KubeObjectInput } from "../harness/fake-kube/index.js";

// The Kubernetes source against the fake API server: the same cluster described as a local
// config file must give the same store; changes arrive within 1 s; broken watches (clean
// close, TCP reset, 410 Expired) recover without losing or duplicating anything.

const ENABLED = { "ambient.istio.io/redirection": "enabled" };

interface PodArgs {
  ns: string;
  name: string;
  node?: string;
  ips?: string[];
  sa?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  ports?: { name: string; containerPort: number }[];
  phase?: string;
  ready?: "True" | "False";
  hostNetwork?: boolean;
}

function pod(a: PodArgs): KubeObjectInput {
  const ips = a.ips ?? [];
  return {
    metadata: { name: a.name, namespace: a.ns, labels: a.labels ?? {}, annotations: a.annotations ?? {} },
    spec: {
      nodeName: a.node ?? "node-a",
      ...(a.sa !== undefined ? { serviceAccountName: a.sa } : {}),
      ...(a.hostNetwork === true ? { hostNetwork: true } : {}),
      containers: [{ name: "app", image: "x", ports: a.ports ?? [] }],
    },
    status: {
      phase: a.phase ?? "Running",
      ...(ips.length > 0 ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } : {}),
      ...(a.ready !== undefined ? { conditions: [{ type: "Ready", status: a.ready }] } : {}),
    },
  };
}

function slice(ns: string, name: string, service: string, ports: { name: string; port: number }[], endpoints: { pod: string; ip: string; ready?: boolean }[]): KubeObjectInput {
  return {
    metadata: { name, namespace: ns, labels: { "kubernetes.io/service-name": service } },
    addressType: "IPv4",
    ports: ports.map((p) => ({ ...p, protocol: "TCP" })),
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      ...(e.ready !== undefined ? { conditions: { ready: e.ready } } : {}),
      targetRef: { kind: "Pod", namespace: ns, name: e.pod },
    })),
  } as KubeObjectInput;
}

function normalise(d: StateData): StateData {
  const byKey = <T extends { namespace: string; name: string }>(xs: readonly T[]): T[] =>
    [...xs].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  return { workloads: byKey(d.workloads), services: byKey(d.services), policies: byKey(d.policies), notices: d.notices };
}

function wl(store: WorkloadStore, ns: string, name: string): Workload | undefined {
  return store.state.workloads.find((w) => w.namespace === ns && w.name === name);
}

describe("Kubernetes workload source", () => {
  let server: FakeKubeServer;
  let source: KubeStateSource | undefined;
  let tmp: string;

  beforeEach(async () => {
    server = await FakeKubeServer.start();
    tmp = await mkdtemp(join(tmpdir(), "zt-cluster-"));
    for (const name of ["mesh", "plain"]) server.store.create("namespaces", { metadata: { name } });
    server.store.create("namespaces", { metadata: { name: "edge", labels: { "topology.istio.io/network": "net2" } } });
  });

  afterEach(async () => {
    await source?.close();
    source = undefined;
    await until(() => server.activeWatches() === 0, "watches closed after close()");
    await server.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  async function startSource(opts: Partial<ConstructorParameters<typeof KubeStateSource>[0]> = {}): Promise<WorkloadStore> {
    const store = new WorkloadStore();
    source = new KubeStateSource({ kubeConfig: kubeConfigFor(server), trustDomain: "cluster.local", restartBaseMs: 50, ...opts });
    await source.start(store);
    return store;
  }

  it("gives the same store as the equivalent local config file", async () => {
    const s = server.store;
    const web1 = s.create("pods", pod({ ns: "mesh", name: "web-1", sa: "web", ips: ["10.244.1.5", "fd00::5"], annotations: ENABLED, ports: [{ name: "http", containerPort: 8080 }], ready: "True" }));
    const web2 = s.create("pods", pod({ ns: "mesh", name: "web-2", node: "node-b", sa: "web", ips: ["10.244.2.6"], annotations: ENABLED, ports: [{ name: "http", containerPort: 8081 }] }));
    const db = s.create("pods", pod({ ns: "plain", name: "db", ips: ["10.244.1.7"], annotations: { "ambient.istio.io/redirection": "pending" }, ready: "False" }));
    const gw = s.create("pods", pod({ ns: "edge", name: "gw", node: "node-b", ips: ["10.244.2.9"] }));
    // Left out: terminated, host network. Kept without an address: a pod with no IP yet.
    s.create("pods", pod({ ns: "plain", name: "done", ips: ["10.244.1.8"], phase: "Succeeded" }));
    s.create("pods", pod({ ns: "mesh", name: "hostnet", ips: ["192.168.0.10"], hostNetwork: true }));
    const starting = s.create("pods", pod({ ns: "mesh", name: "starting", phase: "Pending", annotations: ENABLED }));
    s.create("services", {
      metadata: { name: "web", namespace: "mesh" },
      spec: { clusterIP: "10.96.0.10", selector: { app: "web" }, ports: [{ name: "http", port: 80, targetPort: "http" }, { name: "metrics", port: 9090, targetPort: 9091 }] },
    });
    s.create("services", { metadata: { name: "db", namespace: "plain" }, spec: { clusterIP: "10.96.0.20", ports: [{ port: 5432 }] } });
    s.create("services", { metadata: { name: "headless", namespace: "mesh" }, spec: { clusterIP: "None", ports: [{ port: 80, targetPort: 8080 }] } });
    s.create("services", { metadata: { name: "ext", namespace: "plain" }, spec: { type: "ExternalName", externalName: "example.invalid" } });
    // web-2's named port resolves from its own container port (its slice lacks it); metrics
    // from the numeric targetPort; its endpoint is not ready.
    s.create("endpointslices", slice("mesh", "web-a", "web", [{ name: "http", port: 8080 }, { name: "metrics", port: 9091 }], [{ pod: "web-1", ip: "10.244.1.5", ready: true }]));
    s.create("endpointslices", slice("mesh", "web-b", "web", [], [{ pod: "web-2", ip: "10.244.2.6", ready: false }]));
    s.create("endpointslices", slice("plain", "db-a", "db", [{ name: "", port: 5432 }], [{ pod: "db", ip: "10.244.1.7" }]));

    const file = join(tmp, "local.yaml");
    await writeFile(
      file,
      stringify({
        workloads: [
          { uid: web1.metadata.uid, name: "web-1", namespace: "mesh", serviceAccount: "web", workloadIps: ["10.244.1.5", "fd00::5"], protocol: "HBONE", node: "node-a",
            services: { "mesh/web.mesh.svc.cluster.local": { 80: 8080, 9090: 9091 } } },
          { uid: web2.metadata.uid, name: "web-2", namespace: "mesh", serviceAccount: "web", workloadIps: ["10.244.2.6"], protocol: "HBONE", node: "node-b", status: "Unhealthy",
            services: { "mesh/web.mesh.svc.cluster.local": { 80: 8081, 9090: 9091 } } },
          { uid: db.metadata.uid, name: "db", namespace: "plain", workloadIps: ["10.244.1.7"], node: "node-a", status: "Unhealthy",
            services: { "plain/db.plain.svc.cluster.local": { 5432: 5432 } } },
          { uid: gw.metadata.uid, name: "gw", namespace: "edge", workloadIps: ["10.244.2.9"], node: "node-b", network: "net2" },
          { uid: starting.metadata.uid, name: "starting", namespace: "mesh", protocol: "HBONE", node: "node-a" },
        ],
        services: [
          { name: "web", namespace: "mesh", hostname: "web.mesh.svc.cluster.local", vips: ["10.96.0.10"], ports: { 80: 0, 9090: 9091 }, portNames: { 80: "http", 9090: "metrics" } },
          { name: "db", namespace: "plain", hostname: "db.plain.svc.cluster.local", vips: ["10.96.0.20"], ports: { 5432: 5432 } },
          { name: "headless", namespace: "mesh", hostname: "headless.mesh.svc.cluster.local", ports: { 80: 8080 } },
        ],
      }),
    );
    const fromFile = new WorkloadStore();
    const fileSource = new FileStateSource(file);
    await fileSource.start(fromFile);
    await fileSource.close();

    const fromKube = await startSource();
    // The one difference: Kubernetes reports the ExternalName service it cannot model.
    expect(fromKube.state.notices.map((n) => `${n.object} ${n.field}`)).toEqual(["service plain/ext spec.type"]);
    expect(normalise(fromKube.state)).toEqual({ ...normalise(fromFile.state), notices: fromKube.state.notices });
    expect(fromKube.version).toBe(1);
    // And the store answers the proxy's questions the same way.
    expect(fromKube.serviceTarget("10.96.0.10", 80)?.endpoints.map((e) => `${e.ip}:${e.port}`).sort()).toEqual(["10.244.1.5:8080", "10.244.2.6:8081"]);
    expect(fromKube.pickEndpoint("10.96.0.10", 80)?.endpoint.ip).toBe("10.244.1.5");
    expect(fromKube.workloadByIp("10.244.2.9", "net2")?.name).toBe("gw");
  });

  it("follows adds, enrollment, unenrollment and deletes as they happen", async () => {
    server.store.create("services", { metadata: { name: "web", namespace: "mesh" }, spec: { clusterIP: "10.96.0.10", ports: [{ port: 80, targetPort: 8080 }] } });
    const store = await startSource({ debounceMs: 50 });
    expect(store.state.workloads).toEqual([]);

    // Each change is followed by the event it must cause (speed belongs in bench/).
    const step = async (change: () => void, cond: () => boolean, what: string): Promise<void> => {
      change();
      await until(cond, what, 10_000);
    };
    await step(() => server.store.create("pods", pod({ ns: "mesh", name: "a", ips: ["10.244.1.20"] })), () => wl(store, "mesh", "a") !== undefined, "pod a added");
    expect(wl(store, "mesh", "a")?.protocol).toBe("TCP");
    await step(
      () => server.store.mutate("pods", "a", "mesh", (p) => void (p.metadata.annotations = ENABLED)),
      () => wl(store, "mesh", "a")?.protocol === "HBONE",
      "pod a enrolled",
    );
    await step(
      () => server.store.create("endpointslices", slice("mesh", "web-x", "web", [{ name: "", port: 8080 }], [{ pod: "a", ip: "10.244.1.20" }])),
      () => store.pickEndpoint("10.96.0.10", 80) !== undefined,
      "endpoint",
    );
    expect(store.pickEndpoint("10.96.0.10", 80)?.endpoint).toMatchObject({ ip: "10.244.1.20", port: 8080 });
    // Unenroll: the agent removes the annotation → TCP again.
    await step(
      () => server.store.mutate("pods", "a", "mesh", (p) => void (p.metadata.annotations = {})),
      () => wl(store, "mesh", "a")?.protocol === "TCP",
      "pod a unenrolled",
    );
    // A change we do not model (another annotation) is no new version for the workers.
    const v = store.version;
    server.store.mutate("pods", "a", "mesh", (p) => void (p.metadata.annotations = { touched: "yes" }));
    await until(() => source?.pod("mesh", "a")?.metadata?.annotations?.touched === "yes", "the watch delivered the change");
    source?.flush(); // publish whatever the change scheduled, now
    expect(store.version).toBe(v);
    // Terminated → gone; a deleted pod → gone with its endpoint.
    server.store.create("pods", pod({ ns: "mesh", name: "b", ips: ["10.244.1.21"] }));
    await until(() => wl(store, "mesh", "b") !== undefined, "pod b");
    await step(
      () => server.store.mutate("pods", "b", "mesh", (p) => void ((p.status as { phase: string }).phase = "Failed")),
      () => wl(store, "mesh", "b") === undefined,
      "pod b terminated",
    );
    await step(() => server.store.delete("pods", "a", "mesh"), () => wl(store, "mesh", "a") === undefined, "pod a deleted");
    expect(store.serviceTarget("10.96.0.10", 80)?.endpoints).toEqual([]);
    server.store.delete("services", "web", "mesh");
    await until(() => store.serviceByVip("10.96.0.10") === undefined, "service deleted");
  });

  it("publishes within maxDelay even while changes never stop", async () => {
    const store = await startSource({ debounceMs: 100, maxDelayMs: 300 });
    let i = 0;
    // A change every 20 ms, below the debounce, until the first publication: without maxDelay
    // the debounce would never fire and this would time out.
    const churn = setInterval(() => server.store.create("pods", pod({ ns: "mesh", name: `p${i}`, ips: [`10.244.3.${++i}`] })), 20);
    try {
      await until(() => store.state.workloads.length > 0, "first publication during churn", 10_000);
      expect(i).toBeGreaterThan(0);
    } finally {
      clearInterval(churn);
    }
  });

  it.each(["end", "reset"] as const)("a watch dropped (%s) while the cluster changes recovers without losing or duplicating state", async (mode) => {
    server.store.create("pods", pod({ ns: "mesh", name: "keep", ips: ["10.244.1.30"] }));
    server.store.create("pods", pod({ ns: "mesh", name: "gone", ips: ["10.244.1.31"] }));
    const store = await startSource();
    await server.waitForWatches(4);
    const lists = server.requests.filter((r) => r.verb === "list").length;

    server.holdWatches();
    expect(server.dropWatches({ mode })).toBe(6);
    server.store.delete("pods", "gone", "mesh");
    server.store.create("pods", pod({ ns: "mesh", name: "new", ips: ["10.244.1.32"], annotations: ENABLED }));
    server.store.mutate("pods", "keep", "mesh", (p) => void (p.metadata.annotations = ENABLED));
    server.releaseWatches();

    await until(() => wl(store, "mesh", "new") !== undefined && wl(store, "mesh", "gone") === undefined && wl(store, "mesh", "keep")?.protocol === "HBONE", "changes after reconnect");
    await server.waitForWatches(4);
    expect(store.state.workloads.map((w) => w.name).sort()).toEqual(["keep", "new"]);
    // Resumed from the last resourceVersion: no relist was needed.
    expect(server.requests.filter((r) => r.verb === "list").length).toBe(lists);
    // And it keeps following.
    server.store.create("pods", pod({ ns: "mesh", name: "later", ips: ["10.244.1.33"] }));
    await until(() => wl(store, "mesh", "later") !== undefined, "live change after recovery");
    expect(source?.problems()).toEqual([]);
  });

  it("410 Expired after a long disconnection: relists and ends with exactly the cluster's state", async () => {
    server.store.create("pods", pod({ ns: "mesh", name: "keep", ips: ["10.244.1.40"] }));
    server.store.create("pods", pod({ ns: "mesh", name: "gone", ips: ["10.244.1.41"] }));
    const store = await startSource();
    await server.waitForWatches(4);
    const lists = server.requests.filter((r) => r.verb === "list" && r.resource === "pods").length;

    server.dropWatches({ resource: "pods", mode: "reset" });
    server.store.delete("pods", "gone", "mesh");
    server.store.create("pods", pod({ ns: "mesh", name: "new", ips: ["10.244.1.42"] }));
    server.store.mutate("pods", "keep", "mesh", (p) => void (p.metadata.annotations = ENABLED));
    server.compactHistory();

    await until(() => server.requests.filter((r) => r.verb === "list" && r.resource === "pods").length === lists + 1, "relist");
    await until(() => wl(store, "mesh", "gone") === undefined && wl(store, "mesh", "new") !== undefined && wl(store, "mesh", "keep")?.protocol === "HBONE", "state after relist");
    expect(store.state.workloads.map((w) => w.name).sort()).toEqual(["keep", "new"]);
    server.store.delete("pods", "new", "mesh");
    await until(() => wl(store, "mesh", "new") === undefined, "live change after relist");
  });

  it("a 5xx on the first list is retried; start resolves once everything is listed", async () => {
    server.failNext("GET", "/api/v1/services", 503, { times: 2 });
    server.store.create("services", { metadata: { name: "db", namespace: "plain" }, spec: { clusterIP: "10.96.0.20", ports: [{ port: 5432 }] } });
    const store = await startSource();
    expect(store.serviceByVip("10.96.0.20")?.name).toBe("db");
    expect(server.requests.filter((r) => r.resource === "services" && r.verb === "list").map((r) => r.status)).toEqual([503, 503, 200]);
  });

  it("a cluster without Istio's CRDs (404 on security.istio.io/v1) starts with no such policies, not as a problem", async () => {
    server.failNext("GET", /^\/apis\/security\.istio\.io\/v1\//, 404, { times: 2 });
    server.store.create("pods", pod({ ns: "mesh", name: "a", ips: ["10.244.1.30"] }));
    const store = await startSource();
    expect(wl(store, "mesh", "a")).toBeDefined();
    expect(store.state.policies).toEqual([]);
    expect(source?.problems()).toEqual([]);
    expect(server.requests.filter((r) => r.resource === "authorizationpolicies" && r.verb === "list").map((r) => r.status)).toEqual([404]);
  });

  it("start fails at once with an actionable error when RBAC forbids listing", async () => {
    server.failNext("GET", "/apis/discovery.k8s.io/v1/endpointslices", 403, { times: 100 });
    const err = await startSource().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeSyncError);
    expect((err as Error).message).toMatch(/refused to list endpointslices \(HTTP 403: injected failure \(403 Forbidden\)\).*list\/watch on pods, services, namespaces, discovery.k8s.io endpointslices and security.istio.io authorizationpolicies and peerauthentications/);
    // At once: a 403 is not retried (one list of endpointslices, not a backoff loop).
    expect(server.requests.filter((r) => r.resource === "endpointslices" && r.verb === "list")).toHaveLength(1);
  });

  it("start gives up after syncTimeoutMs when the API never answers a list", async () => {
    server.failNext("GET", "/api/v1/pods", 500, { times: 1000 });
    const err = await startSource({ syncTimeoutMs: 400 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeSyncError);
    expect((err as Error).message).toMatch(/could not list pods .* within 400 ms \(last error: HTTP 500: injected failure/);
  });
});
