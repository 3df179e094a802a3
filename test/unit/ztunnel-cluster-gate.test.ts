import { X509Certificate } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitUntil as until } from "../harness/wait.js";
import { IdentityNotConfirmedError, IdentityNotLocalError } from "../../src/ztunnel/cluster/errors.js";
import { GatedIssuer, gateManager } from "../../src/ztunnel/cluster/gated.js";
import { IdentityGate } from "../../src/ztunnel/cluster/identity-gate.js";
import { KubeStateSource } from "../../src/ztunnel/cluster/kube-source.js";
import { WorkloadStore } from "../../src/ztunnel/state/store.js";
import { CertManager } from "../../src/ztunnel/tls/cert-manager.js";
import type { NetnsRef, WorkloadInfo, WorkloadProxyManager } from "../../src/zds/index.js";
import { FakeKubeServer, kubeConfigFor, type KubeObjectInput } from "../harness/fake-kube/index.js";
import { id, testCa } from "../fixtures/ztunnel-pki.js";

// Cluster-mode certificates: a ZDS Add proceeds (and a certificate is issued) only once
// Kubernetes shows the pod on THIS node with the service account the Add names.

const NODE = "node-a";
const TIMEOUT_MS = 600;

function pod(name: string, opts: { node?: string; sa?: string; ip?: string } = {}): KubeObjectInput {
  return {
    metadata: { name, namespace: "mesh" },
    spec: { ...(opts.node !== undefined ? { nodeName: opts.node } : {}), serviceAccountName: opts.sa ?? "web", containers: [{ name: "app", image: "x" }] },
    status: opts.ip !== undefined ? { phase: "Running", podIP: opts.ip, podIPs: [{ ip: opts.ip }] } : { phase: "Pending" },
  };
}

const netns: NetnsRef = { identity: () => ({ dev: 1, ino: 1 }), close: () => {} } as unknown as NetnsRef;

describe("identity gate (cluster-mode certificates)", () => {
  let server: FakeKubeServer;
  let source: KubeStateSource;
  let store: WorkloadStore;
  let gate: IdentityGate;
  let certs: CertManager;
  let started: { uid: string; identity: string }[];
  let manager: WorkloadProxyManager;

  beforeEach(async () => {
    server = await FakeKubeServer.start();
    server.store.create("namespaces", { metadata: { name: "mesh" } });
    store = new WorkloadStore();
    // A long debounce: the gate itself must publish the confirmed pod to the store.
    source = new KubeStateSource({ kubeConfig: kubeConfigFor(server), trustDomain: "cluster.local", debounceMs: 5_000, maxDelayMs: 5_000 });
    await source.start(store);
    gate = new IdentityGate({ pods: source, nodeName: NODE, trustDomain: "cluster.local", timeoutMs: TIMEOUT_MS });
    certs = new CertManager(new GatedIssuer(await testCa(), gate, NODE));
    started = [];
    // Stands in for InPodManager: the pod must be in the store (by uid) when it starts; it
    // asks for the certificate of the identity the Add names.
    const inner: WorkloadProxyManager = {
      start: async (uid: string, info: WorkloadInfo) => {
        const w = store.workloadByUid(uid);
        if (w === undefined) throw new Error(`pod ${uid} not in the store`);
        const cert = await certs.get(id(info.namespace, info.serviceAccount, w.trustDomain));
        started.push({ uid, identity: new X509Certificate(cert.certPem).subjectAltName ?? "" });
      },
      stop: async () => {},
    };
    manager = gateManager(inner, gate);
  });

  afterEach(async () => {
    gate.close();
    certs.close();
    await source.close();
    await server.stop();
  });

  it("an Add waits until Kubernetes shows the pod on this node, then starts with its certificate (no IP needed)", async () => {
    const created = server.store.create("pods", pod("web-1"));
    const uid = created.metadata.uid ?? "";
    let settled = false;
    const add = manager.start(uid, { name: "web-1", namespace: "mesh", serviceAccount: "web" }, netns).finally(() => (settled = true));
    expect(gate.pending()).toEqual([uid]);
    // Kubernetes shows the pod, still unscheduled: the Add keeps waiting.
    await until(() => source.pod("mesh", "web-1") !== undefined, "the pod in the informer");
    expect(gate.pending()).toEqual([uid]);
    expect(settled).toBe(false);
    expect(started).toEqual([]);
    // Bound to this node; the kubelet reports the IP only after the CNI ADD (after our Ack).
    server.store.mutate("pods", "web-1", "mesh", (p) => void ((p.spec as { nodeName?: string }).nodeName = NODE));
    await add;
    expect(started).toEqual([{ uid, identity: "URI:spiffe://cluster.local/ns/mesh/sa/web" }]);
    expect(store.workloadByUid(uid)).toMatchObject({ node: NODE, workloadIps: [] });
    expect(gate.pending()).toEqual([]);
  });

  it("a pod already confirmed is admitted at once", async () => {
    const uid = server.store.create("pods", pod("web-1", { node: NODE, ip: "10.244.1.5" })).metadata.uid ?? "";
    await until(() => source.pod("mesh", "web-1") !== undefined, "the pod in the informer");
    const add = manager.start(uid, { name: "web-1", namespace: "mesh", serviceAccount: "web" }, netns);
    // Decided on the spot: the Add never waited for a Kubernetes event.
    expect(gate.pending()).toEqual([]);
    await add;
    expect(certs.list()).toHaveLength(1);
  });

  it("a pod that never appears is refused after the timeout: error, nothing started, no certificate", async () => {
    const t0 = Date.now();
    const err = await manager.start("uid-ghost", { name: "ghost", namespace: "mesh", serviceAccount: "web" }, netns).catch((e: unknown) => e);
    const elapsed = Date.now() - t0;
    expect(err).toBeInstanceOf(IdentityNotConfirmedError);
    expect((err as Error).message).toBe(
      `pod mesh/ghost (uid uid-ghost): not confirmed by Kubernetes within ${TIMEOUT_MS} ms (no such pod in Kubernetes yet); no certificate is issued for it on node ${NODE}`,
    );
    expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 10);
    expect(started).toEqual([]);
    expect(certs.list()).toEqual([]);
    expect(gate.pending()).toEqual([]);
  });

  it("a pod of the same name with another uid (an older incarnation) is not this pod", async () => {
    server.store.create("pods", pod("web-1", { node: NODE, ip: "10.244.1.5" }));
    const err = await manager.start("uid-new", { name: "web-1", namespace: "mesh", serviceAccount: "web" }, netns).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdentityNotConfirmedError);
    expect((err as Error).message).toMatch(/not confirmed by Kubernetes within 600 ms \(Kubernetes has uid .* for that name\)/);
    expect(certs.list()).toEqual([]);
  });

  it("a pod on another node is refused at once", async () => {
    const uid = server.store.create("pods", pod("web-2", { node: "node-b", ip: "10.244.2.5" })).metadata.uid ?? "";
    await until(() => source.pod("mesh", "web-2") !== undefined, "the pod in the informer");
    const add = manager.start(uid, { name: "web-2", namespace: "mesh", serviceAccount: "web" }, netns).catch((e: unknown) => e);
    // Refused on the spot: no waiter, so not the timeout.
    expect(gate.pending()).toEqual([]);
    const err = await add;
    expect(err).toBeInstanceOf(IdentityNotConfirmedError);
    expect((err as Error).message).toContain("Kubernetes runs it on node node-b, not on this node (node-a)");
    expect(started).toEqual([]);
    expect(certs.list()).toEqual([]);
  });

  it("a pod scheduled elsewhere while we wait is refused as soon as Kubernetes says so", async () => {
    const uid = server.store.create("pods", pod("web-3")).metadata.uid ?? "";
    const add = manager.start(uid, { name: "web-3", namespace: "mesh", serviceAccount: "web" }, netns).catch((e: unknown) => e);
    await until(() => source.pod("mesh", "web-3") !== undefined, "the pod in the informer");
    expect(gate.pending()).toEqual([uid]);
    server.store.mutate("pods", "web-3", "mesh", (p) => void ((p.spec as { nodeName?: string }).nodeName = "node-b"));
    const err = await add;
    // Refused by the pod event (its reason), not by the timeout.
    expect((err as Error).message).toContain("on node node-b, not on this node");
    expect((err as Error).message).not.toContain("not confirmed by Kubernetes within");
  });

  it("an Add naming another service account than the pod runs as is refused", async () => {
    const uid = server.store.create("pods", pod("web-1", { node: NODE, ip: "10.244.1.5", sa: "web" })).metadata.uid ?? "";
    await until(() => source.pod("mesh", "web-1") !== undefined, "the pod in the informer");
    const err = await manager.start(uid, { name: "web-1", namespace: "mesh", serviceAccount: "admin" }, netns).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdentityNotConfirmedError);
    expect((err as Error).message).toContain("it runs as service account web, but the Add names admin");
    expect(certs.list()).toEqual([]);
  });

  it("the CA signs only identities a pod on this node has (renewals included)", async () => {
    server.store.create("pods", pod("here", { node: NODE, ip: "10.244.1.5", sa: "web" }));
    server.store.create("pods", pod("there", { node: "node-b", ip: "10.244.2.5", sa: "db" }));
    await until(() => source.pods().length === 2, "both pods in the informer");
    const cert = await certs.get(id("mesh", "web"));
    expect(new X509Certificate(cert.certPem).subjectAltName).toBe("URI:spiffe://cluster.local/ns/mesh/sa/web");
    await expect(certs.get(id("mesh", "db"))).rejects.toThrow(IdentityNotLocalError);
    await expect(certs.get(id("mesh", "db"))).rejects.toThrow(
      "refusing to issue a certificate for spiffe://cluster.local/ns/mesh/sa/db: Kubernetes shows no pod with that namespace and service account on node node-a",
    );
    await expect(certs.get(id("mesh", "web", "other.domain"))).rejects.toThrow(IdentityNotLocalError);
    // The pod leaves this node: its identity is no longer signed here.
    server.store.delete("pods", "here", "mesh");
    await until(() => source.pod("mesh", "here") === undefined, "the pod gone from the informer");
    certs.forget(id("mesh", "web"));
    await expect(certs.get(id("mesh", "web"))).rejects.toThrow(IdentityNotLocalError);
  });
});
