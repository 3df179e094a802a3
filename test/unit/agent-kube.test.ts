import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EnrollmentController } from "../../src/agent/enroll/controller.js";
import { KubeSource } from "../../src/agent/enroll/kube-source.js";
import { PodLifecycle } from "../../src/agent/enroll/lifecycle.js";
import { REDIRECTION_ANNOTATION, type PodView } from "../../src/agent/enroll/model.js";
import { FakeKubeServer, kubeConfigFor, type KubeObjectInput } from "../harness/fake-kube/index.js";
import { FakeHost, FakeRedirector, FakeRef, FakeZds, FakeOpener, StepLog } from "../fixtures/agent-fakes.js";

// Kubernetes enrollment end to end against the fake API server (client-node for real), with
// the kernel-facing seams faked: namespace labels, pod opt-out, hostNetwork, terminal and
// deleted pods, the redirection annotation, and watch streams that break.

const NODE = "node-a";
const AMBIENT = { "istio.io/dataplane-mode": "ambient" };

function pod(name: string, ns: string, ip: string, over: { labels?: Record<string, string>; hostNetwork?: boolean; node?: string; annotations?: Record<string, string> } = {}): KubeObjectInput {
  return {
    metadata: { name, namespace: ns, labels: over.labels ?? {}, ...(over.annotations ? { annotations: over.annotations } : {}) },
    spec: { nodeName: over.node ?? NODE, serviceAccountName: `${name}-sa`, containers: [{ name: "app", image: "x" }], ...(over.hostNetwork ? { hostNetwork: true } : {}) },
    status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
  };
}

describe("Kubernetes enrollment (fake API server)", () => {
  let server: FakeKubeServer;
  let source: KubeSource;
  let controller: EnrollmentController;
  let lifecycle: PodLifecycle;
  let log: StepLog;
  let zds: FakeZds;
  let host: FakeHost;
  const running = new Set<string>(); // uids whose "processes" the netns finder can see

  function annotation(name: string, ns: string): string | undefined {
    const p = server.store.get("pods", name, ns) as { metadata: { annotations?: Record<string, string> } } | undefined;
    return p?.metadata.annotations?.[REDIRECTION_ANNOTATION];
  }
  function uidOf(name: string, ns: string): string {
    return (server.store.get("pods", name, ns) as { metadata: { uid: string } }).metadata.uid;
  }
  function enrolledNames(): string[] {
    return lifecycle
      .all()
      .map((p) => `${p.pod.namespace}/${p.pod.name}:${p.state}`)
      .sort();
  }

  beforeEach(async () => {
    server = await FakeKubeServer.start();
    server.store.create("namespaces", { metadata: { name: "mesh" } });
    server.store.create("namespaces", { metadata: { name: "kube-system", labels: AMBIENT } });
    server.store.create("namespaces", { metadata: { name: "istio-system", labels: AMBIENT } });
    for (const p of [
      pod("web", "mesh", "10.0.0.2"),
      pod("db", "mesh", "10.0.0.3"),
      pod("optout", "mesh", "10.0.0.4", { labels: { "istio.io/dataplane-mode": "none" } }),
      pod("hostnet", "mesh", "192.168.0.10", { hostNetwork: true }),
      pod("elsewhere", "mesh", "10.0.1.2", { node: "node-b" }),
      pod("dns", "kube-system", "10.0.0.9"),
      pod("ztunnel", "istio-system", "10.0.0.10"),
    ]) {
      const o = server.store.create("pods", p) as { metadata: { uid: string } };
      running.add(o.metadata.uid);
    }
    log = new StepLog();
    zds = new FakeZds(log);
    host = new FakeHost(log);
    lifecycle = new PodLifecycle({
      zds,
      redirector: new FakeRedirector(log),
      host,
      opener: new FakeOpener(),
      annotate: (p, s) => source.setRedirection(p, s),
      addrsIn: async () => [],
    });
    source = new KubeSource({ kubeConfig: kubeConfigFor(server), nodeName: NODE, restartBaseMs: 20, restartMaxMs: 100 });
    controller = new EnrollmentController(
      {
        source,
        lifecycle,
        findNetns: async (p: PodView) => (running.has(p.uid) ? { ref: new FakeRef(p.uid), origin: `/proc/1/ns/net#${p.name}` } : undefined),
      },
      { decide: { excludeNamespaces: ["kube-system"], agentNamespace: "istio-system" }, retryBaseMs: 20, retryMaxMs: 200, concurrency: 2 },
    );
    await controller.start();
  });

  afterEach(async () => {
    await controller.stop();
    await server.stop();
    running.clear();
  });

  it("labelling a namespace enrolls its running pods and annotates them; opt-out, hostNetwork, other nodes, excluded and own namespace are left alone", async () => {
    expect(enrolledNames()).toEqual([]);
    server.store.mutate("namespaces", "mesh", undefined, (ns) => {
      (ns.metadata as { labels?: Record<string, string> }).labels = { ...AMBIENT };
    });
    await expect.poll(() => enrolledNames(), { timeout: 5000 }).toEqual(["mesh/db:enabled", "mesh/web:enabled"]);
    await expect.poll(() => [annotation("web", "mesh"), annotation("db", "mesh")]).toEqual(["enabled", "enabled"]);
    for (const other of ["optout", "hostnet"]) expect(annotation(other, "mesh")).toBeUndefined();
    expect(annotation("dns", "kube-system")).toBeUndefined();
    expect(annotation("ztunnel", "istio-system")).toBeUndefined();
    expect(host.ips).toEqual(new Set(["10.0.0.2", "10.0.0.3"]));
    // The annotation is a merge patch on pods/status, as Istio's agent does it.
    const patches = server.requests.filter((r) => r.verb === "patch");
    expect(patches.length).toBeGreaterThanOrEqual(2);
    for (const r of patches) {
      expect(r).toMatchObject({ resource: "pods", subresource: "status", contentType: "application/merge-patch+json" });
    }
  });

  it("unlabelling removes the pods and their annotation; a pod's own opt-out removes just it", async () => {
    server.store.mutate("namespaces", "mesh", undefined, (ns) => {
      (ns.metadata as { labels?: Record<string, string> }).labels = { ...AMBIENT };
    });
    await expect.poll(() => enrolledNames(), { timeout: 5000 }).toEqual(["mesh/db:enabled", "mesh/web:enabled"]);
    server.store.mutate("pods", "db", "mesh", (p) => {
      (p.metadata as { labels?: Record<string, string> }).labels = { "istio.io/dataplane-mode": "none" };
    });
    await expect.poll(() => enrolledNames(), { timeout: 5000 }).toEqual(["mesh/web:enabled"]);
    await expect.poll(() => annotation("db", "mesh")).toBeUndefined();
    server.store.mutate("namespaces", "mesh", undefined, (ns) => {
      (ns.metadata as { labels?: Record<string, string> }).labels = {};
    });
    await expect.poll(() => enrolledNames(), { timeout: 5000 }).toEqual([]);
    await expect.poll(() => annotation("web", "mesh")).toBeUndefined();
    expect(host.ips.size).toBe(0);
    expect(log.steps.filter((s) => s.startsWith("zds-del")).sort()).toEqual([`zds-del ${uidOf("db", "mesh")}`, `zds-del ${uidOf("web", "mesh")}`].sort());
  });

  it("terminal and deleted pods leave the mesh; a deleted pod is not patched", async () => {
    server.store.mutate("namespaces", "mesh", undefined, (ns) => {
      (ns.metadata as { labels?: Record<string, string> }).labels = { ...AMBIENT };
    });
    await expect.poll(() => enrolledNames(), { timeout: 5000 }).toEqual(["mesh/db:enabled", "mesh/web:enabled"]);
    server.store.mutate("pods", "db", "mesh", (p) => {
      (p.status as { phase: string }).phase = "Succeeded";
    });
    await expect.poll(() => enrolledNames(), { timeout: 5000 }).toEqual(["mesh/web:enabled"]);
    const since = server.nextSeq;
    server.store.delete("pods", "web", "mesh");
    await expect.poll(() => enrolledNames(), { timeout: 5000 }).toEqual([]);
    expect(server.requests.filter((r) => r.seq >= since && r.verb === "patch")).toEqual([]);
  });

  it("a new pod with no IP yet waits (its CNI ADD enrolls it); once it has an IP the informer path enrolls it", async () => {
    server.store.mutate("namespaces", "mesh", undefined, (ns) => {
      (ns.metadata as { labels?: Record<string, string> }).labels = { ...AMBIENT };
    });
    const created = server.store.create("pods", { ...pod("late", "mesh", "10.0.0.20"), status: { phase: "Pending" } }) as { metadata: { uid: string } };
    running.add(created.metadata.uid);
    await expect.poll(() => enrolledNames(), { timeout: 5000 }).toEqual(["mesh/db:enabled", "mesh/web:enabled"]);
    await new Promise((r) => setTimeout(r, 100));
    expect(enrolledNames()).not.toContain("mesh/late:enabled");
    server.store.mutate("pods", "late", "mesh", (p) => {
      p.status = { phase: "Running", podIP: "10.0.0.20", podIPs: [{ ip: "10.0.0.20" }] };
    });
    await expect.poll(() => enrolledNames(), { timeout: 5000 }).toContain("mesh/late:enabled");
  });

  it("ztunnel unavailable: the pod is annotated pending and retried until ztunnel takes it", async () => {
    zds.down = true;
    server.store.mutate("namespaces", "mesh", undefined, (ns) => {
      (ns.metadata as { labels?: Record<string, string> }).labels = { ...AMBIENT };
    });
    await expect.poll(() => annotation("web", "mesh"), { timeout: 5000 }).toBe("pending");
    expect(enrolledNames()).toEqual(["mesh/db:pending", "mesh/web:pending"]);
    zds.down = false;
    await expect.poll(() => annotation("web", "mesh"), { timeout: 5000 }).toBe("enabled");
    await expect.poll(() => enrolledNames()).toEqual(["mesh/db:enabled", "mesh/web:enabled"]);
  });

  it.each(["end", "reset"] as const)("a watch dropped mid-stream (%s) loses no event", async (mode) => {
    await server.waitForWatches(2);
    // Drop every watch and label the namespace in the same tick: the change happens while
    // no watch is open, so only a correct resume/relist can deliver it.
    server.dropWatches({ mode });
    server.store.mutate("namespaces", "mesh", undefined, (ns) => {
      (ns.metadata as { labels?: Record<string, string> }).labels = { ...AMBIENT };
    });
    await expect.poll(() => enrolledNames(), { timeout: 8000 }).toEqual(["mesh/db:enabled", "mesh/web:enabled"]);
    await expect.poll(() => source.notReadyReason(), { timeout: 5000 }).toBeUndefined();
  });

  it("410 Gone on resume: the informer relists and still sees the change", async () => {
    await server.waitForWatches(2);
    server.holdWatches();
    server.dropWatches();
    server.store.mutate("namespaces", "mesh", undefined, (ns) => {
      (ns.metadata as { labels?: Record<string, string> }).labels = { ...AMBIENT };
    });
    server.compactHistory();
    server.releaseWatches();
    await expect.poll(() => enrolledNames(), { timeout: 8000 }).toEqual(["mesh/db:enabled", "mesh/web:enabled"]);
  });

  it("a leftover annotation on a pod that is not enrolled is removed", async () => {
    server.store.create("pods", pod("stale", "mesh", "10.0.0.30", { annotations: { [REDIRECTION_ANNOTATION]: "enabled" } }));
    await expect.poll(() => annotation("stale", "mesh"), { timeout: 5000 }).toBeUndefined();
  });

  it("lookup of a pod the cache has not seen yet asks the API server", async () => {
    const since = server.nextSeq;
    server.holdWatches();
    server.dropWatches();
    server.store.create("pods", pod("fresh", "mesh", "10.0.0.40"));
    const v = await source.lookup("mesh", "fresh");
    expect(v).toMatchObject({ name: "fresh", ips: ["10.0.0.40"], serviceAccount: "fresh-sa" });
    expect(server.requests.some((r) => r.seq >= since && r.verb === "get" && r.name === "fresh")).toBe(true);
    expect(await source.lookup("mesh", "missing")).toBeUndefined();
    expect(await source.lookup("mesh", "elsewhere")).toBeUndefined();
    server.releaseWatches();
  });
});
