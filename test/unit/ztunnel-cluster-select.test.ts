import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SourceSelectionError } from "../../src/ztunnel/cluster/errors.js";
import { GatedIssuer } from "../../src/ztunnel/cluster/gated.js";
import { SERVICE_ACCOUNT_DIR, selectMeshSource, type MeshSource } from "../../src/ztunnel/cluster/select.js";
import { loadConfig } from "../../src/ztunnel/config.js";
import { WorkloadStore } from "../../src/ztunnel/state/store.js";
import { FakeKubeServer, writeKubeconfig } from "../harness/fake-kube/index.js";
import { testCa } from "../fixtures/ztunnel-pki.js";
import { captureLogs } from "../fixtures/log-capture.js";

// Which state source ztunnel uses, and why, from its environment.


describe("state source selection", () => {
  let tmp: string;
  let selected: MeshSource | undefined;

  beforeEach(async () => {
    tmp = await mkdtemp(join(tmpdir(), "zt-select-"));
  });

  afterEach(async () => {
    await selected?.close();
    selected = undefined;
    await rm(tmp, { recursive: true, force: true });
  });

  async function select(env: Record<string, string>, log = captureLogs().log): Promise<MeshSource> {
    const s = await selectMeshSource(loadConfig(env), env, { log, inClusterPathPrefix: tmp });
    await selected?.close();
    selected = s;
    return s;
  }

  it("LOCAL_XDS_PATH set → the file, even with Kubernetes credentials around (and says so)", async () => {
    const { log, lines } = captureLogs();
    const s = await select({ LOCAL_XDS_PATH: join(tmp, "local.yaml"), KUBECONFIG: join(tmp, "kubeconfig") }, log);
    expect(s.mode).toBe("file");
    expect(s.source.name).toBe(`file:${join(tmp, "local.yaml")}`);
    expect(s.reason).toBe("LOCAL_XDS_PATH is set (Kubernetes credentials are present but not used)");
    expect(lines()).toContainEqual(expect.objectContaining({ mode: "file", msg: "workload state from the local config file" }));
    // No gate in local mode: the CA and the manager are used as they are.
    const ca = await testCa();
    expect(s.issuer(ca)).toBe(ca);
    expect(s.notReady()).toEqual([]);
  });

  it("nothing configured → an error that lists what to set", async () => {
    await expect(select({})).rejects.toThrow(SourceSelectionError);
    await expect(select({})).rejects.toThrow(
      "no workload state source: LOCAL_XDS_PATH is not set, no XDS_ADDRESS or istiod token, and no Kubernetes credentials were found (no KUBECONFIG, no KUBERNETES_SERVICE_HOST with a service account token); set LOCAL_XDS_PATH to a local config file, or run ztunnel in a cluster, or set KUBECONFIG",
    );
  });

  it("KUBECONFIG → the Kubernetes API, which then fills the store; certificates gated to this node", async () => {
    const server = await FakeKubeServer.start();
    try {
      server.store.create("namespaces", { metadata: { name: "mesh" } });
      server.store.create("pods", {
        metadata: { name: "web", namespace: "mesh", annotations: { "ambient.istio.io/redirection": "enabled" } },
        spec: { nodeName: "node-a", containers: [{ name: "app", image: "x" }] },
        status: { phase: "Running", podIP: "10.244.1.5" },
      });
      const kubeconfig = await writeKubeconfig(server, join(tmp, "kubeconfig"));
      const { log, lines } = captureLogs();
      const s = await select({ KUBECONFIG: kubeconfig, NODE_NAME: "node-a", IDENTITY_CONFIRM_TIMEOUT: "2s" }, log);
      expect(s.mode).toBe("kubernetes");
      expect(s.reason).toBe(`no LOCAL_XDS_PATH; KUBECONFIG=${kubeconfig}`);
      expect(s.source.name).toBe(`kubernetes:${server.url}`);
      expect(lines()).toContainEqual(
        expect.objectContaining({ mode: "kubernetes", node: "node-a", confirmTimeoutMs: 2000, server: server.url, msg: expect.stringContaining("Kubernetes API") }),
      );
      expect(s.issuer(await testCa())).toBeInstanceOf(GatedIssuer);
      const store = new WorkloadStore();
      await s.source.start(store);
      expect(store.state.workloads.map((w) => [w.name, w.protocol])).toEqual([["web", "HBONE"]]);
      await s.close();
    } finally {
      await server.stop();
    }
  });

  it("Kubernetes mode without NODE_NAME is an error naming it", async () => {
    const kubeconfig = await writeKubeconfig({ url: "http://127.0.0.1:1", token: "t" }, join(tmp, "kubeconfig"));
    await expect(select({ KUBECONFIG: kubeconfig })).rejects.toThrow(/^NODE_NAME is required in Kubernetes mode \(no LOCAL_XDS_PATH; KUBECONFIG=.*\): .*fieldRef: spec.nodeName/);
  });

  it("a KUBECONFIG that cannot be read is an error naming it", async () => {
    await expect(select({ KUBECONFIG: join(tmp, "missing"), NODE_NAME: "n" })).rejects.toThrow(new RegExp(`^KUBECONFIG=${join(tmp, "missing")}: cannot load`));
  });

  it("a bad IDENTITY_CONFIRM_TIMEOUT is an error naming it", async () => {
    const kubeconfig = await writeKubeconfig({ url: "http://127.0.0.1:1", token: "t" }, join(tmp, "kubeconfig"));
    await expect(select({ KUBECONFIG: kubeconfig, NODE_NAME: "n", IDENTITY_CONFIRM_TIMEOUT: "soon" })).rejects.toThrow(
      'IDENTITY_CONFIRM_TIMEOUT: "soon" is not a duration',
    );
  });

  it("in-cluster: KUBERNETES_SERVICE_HOST without a service account token is an error; with one it is used", async () => {
    const env = { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443", NODE_NAME: "node-a" };
    await expect(select(env)).rejects.toThrow(
      `no LOCAL_XDS_PATH, and KUBERNETES_SERVICE_HOST is set but there is no service account token at ${tmp}${SERVICE_ACCOUNT_DIR}/token`,
    );
    await mkdir(join(tmp, SERVICE_ACCOUNT_DIR), { recursive: true });
    await writeFile(join(tmp, SERVICE_ACCOUNT_DIR, "token"), "token");
    const s = await select(env);
    expect(s.mode).toBe("kubernetes");
    expect(s.reason).toBe("no LOCAL_XDS_PATH; in-cluster service account (KUBERNETES_SERVICE_HOST)");
    expect(s.source.name).toBe("kubernetes:https://10.96.0.1:443");
    expect((await select({ ...env, KUBERNETES_SERVICE_HOST: "fd00::1" })).source.name).toBe("kubernetes:https://[fd00::1]:443");
  });
});
