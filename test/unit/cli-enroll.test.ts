import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseLocalConfig } from "../../src/ztunnel/state/local-config.js";
import { parseInventory } from "../../src/agent/enroll/inventory.js";
import { cli } from "../fixtures/cli-run.js";
import { FakeKubeServer, writeKubeconfig } from "../harness/fake-kube/index.js";

// ambientctl enroll/unenroll: against the fake Kubernetes API server (a real
// @kubernetes/client-node merge patch) and against local inventory / local config files.

describe("ambientctl enroll via Kubernetes", () => {
  let server: FakeKubeServer;
  let dir: string;
  let kubeconfig: string;

  beforeAll(async () => {
    server = await FakeKubeServer.start();
    server.store.create("namespaces", { metadata: { name: "shop", labels: { team: "a" } } });
    dir = mkdtempSync(join(tmpdir(), "cli-enroll-"));
    kubeconfig = await writeKubeconfig(server, join(dir, "kubeconfig"));
  });

  afterAll(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const labels = (): Record<string, string> | undefined => server.store.get("namespaces", "shop")?.metadata.labels;

  it("enroll labels the namespace with a merge patch and keeps its other labels; a second enroll changes nothing", async () => {
    const r = await cli(["enroll", "shop", "--kubeconfig", kubeconfig]);
    expect(r, r.err).toMatchObject({ code: 0 });
    expect(r.out).toContain("namespace shop enrolled in the ambient mesh (changed: kubernetes)");
    expect(labels()).toEqual({ team: "a", "istio.io/dataplane-mode": "ambient", "kubernetes.io/metadata.name": "shop" });
    const patches = server.requests.filter((q) => q.method === "PATCH");
    expect(patches.map((q) => [q.resource, q.name])).toEqual([["namespaces", "shop"]]);
    const again = await cli(["enroll", "shop", "-o", "json"], { KUBECONFIG: kubeconfig });
    expect(again.code).toBe(0);
    expect(JSON.parse(again.out)).toEqual({ namespace: "shop", enrolled: true, changed: [], unchanged: ["kubernetes"] });
    expect(server.requests.filter((q) => q.method === "PATCH")).toHaveLength(1);
  });

  it("unenroll removes only the label", async () => {
    const r = await cli(["unenroll", "shop", "--kubeconfig", kubeconfig]);
    expect(r.code, r.err).toBe(0);
    expect(labels()).toEqual({ team: "a", "kubernetes.io/metadata.name": "shop" });
  });

  it("a missing namespace fails with exit 1 and says how to create it", async () => {
    const r = await cli(["enroll", "nope", "--kubeconfig", kubeconfig]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('namespace "nope" does not exist');
    expect(r.err).toContain("kubectl create namespace nope");
  });

  it("an unreachable API server exits 3", async () => {
    const gone = join(dir, "gone.kubeconfig");
    await writeKubeconfig({ url: "http://127.0.0.1:1", token: "x" }, gone);
    const r = await cli(["enroll", "shop", "--kubeconfig", gone]);
    expect(r.code).toBe(3);
    expect(r.err).toContain("cannot reach the API server http://127.0.0.1:1");
  });
});

describe("ambientctl enroll on a cluster-free node (inventory and local config files)", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "cli-local-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("labels the namespace in every inventory, keeps comments, and switches the namespace's workloads to HBONE", async () => {
    const inv0 = join(dir, "n0.yaml");
    const inv1 = join(dir, "n1.yaml");
    const cfg = join(dir, "local.yaml");
    writeFileSync(inv0, "# node 0\nnamespaces:\n  - name: shop # the shop\n    labels: { team: a }\npods: []\n");
    writeFileSync(inv1, "pods: []\n");
    writeFileSync(
      cfg,
      "workloads:\n  - { uid: u1, name: a, namespace: shop, workloadIps: [10.0.0.1], protocol: TCP }\n  - { uid: u2, name: b, namespace: other, workloadIps: [10.0.0.2], protocol: TCP }\n",
    );
    const r = await cli(["enroll", "shop", "--inventory", inv0, "--inventory", inv1, "--local-config", cfg]);
    expect(r.code, r.err).toBe(0);
    expect(readFileSync(inv0, "utf8")).toContain("# the shop");
    expect(parseInventory(readFileSync(inv0, "utf8")).namespaces.get("shop")).toMatchObject({ team: "a", "istio.io/dataplane-mode": "ambient" });
    expect(parseInventory(readFileSync(inv1, "utf8")).namespaces.get("shop")).toMatchObject({ "istio.io/dataplane-mode": "ambient" });
    const w = parseLocalConfig(readFileSync(cfg, "utf8")).workloads;
    expect(w.map((x) => [x.name, x.protocol])).toEqual([["a", "HBONE"], ["b", "TCP"]]);

    const un = await cli(["unenroll", "shop", "-o", "json"], { AMBIENTCTL_INVENTORY: `${inv0},${inv1}`, AMBIENTCTL_LOCAL_CONFIG: cfg });
    expect(un.code, un.err).toBe(0);
    expect(JSON.parse(un.out)).toMatchObject({ enrolled: false, changed: [inv0, inv1, cfg] });
    expect(parseInventory(readFileSync(inv0, "utf8")).namespaces.get("shop")).toEqual({ team: "a", "kubernetes.io/metadata.name": "shop" });
    expect(parseLocalConfig(readFileSync(cfg, "utf8")).workloads.map((x) => x.protocol)).toEqual(["TCP", "TCP"]);
  });

  it("without a kubeconfig or an inventory: usage error (2) that names the flags", async () => {
    const r = await cli(["enroll", "shop"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--inventory");
    expect(r.err).toContain("--kubeconfig");
  });

  it("a missing inventory file or a bad namespace name is a usage error", async () => {
    expect((await cli(["enroll", "shop", "--inventory", join(dir, "missing.yaml")])).code).toBe(2);
    const bad = await cli(["enroll", "Shop_1", "--inventory", join(dir, "n0.yaml")]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("is not a namespace name");
  });
});
