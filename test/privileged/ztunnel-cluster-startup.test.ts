import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runZtunnelToExit as runZtunnel } from "../fixtures/ztunnel-run-once.js";
import { FakeKubeServer, writeKubeconfig } from "../harness/fake-kube/index.js";
import { describePrivileged } from "../harness/privileged.js";

// The compiled ztunnel chooses its state source at start-up; without one it refuses to start
// with one line saying what to set (the choice itself is unit-tested in ztunnel-cluster-select).

describePrivileged("ztunnel start-up: choosing the workload state source", () => {
  let dir: string;
  let kube: FakeKubeServer;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ztunnel-cluster-startup-"));
    kube = await FakeKubeServer.start();
  });
  afterAll(async () => {
    await kube?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const base = (): Record<string, string> => ({ CA_ROOT_DIR: join(dir, "ca"), CA_ROOT_GENERATE: "true", INPOD_UDS: join(dir, "zds.sock") });

  it("neither LOCAL_XDS_PATH nor Kubernetes credentials: refuses, naming what to set", async () => {
    const r = await runZtunnel(base());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ztunnel: no workload state source: LOCAL_XDS_PATH is not set, no XDS_ADDRESS or istiod token, and no Kubernetes credentials were found .*set KUBECONFIG$/m);
  });

  it("KUBECONFIG without NODE_NAME: refuses, naming NODE_NAME", async () => {
    const kc = await writeKubeconfig({ url: kube.url, token: kube.token }, join(dir, "kubeconfig"));
    const r = await runZtunnel({ ...base(), KUBECONFIG: kc });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/NODE_NAME is required in Kubernetes mode \(no LOCAL_XDS_PATH; KUBECONFIG=/);
  });

  it("credentials the API server rejects: refuses at once with the reason", async () => {
    const kc = await writeKubeconfig({ url: kube.url, token: "wrong" }, join(dir, "kubeconfig-bad"));
    const t0 = Date.now();
    const r = await runZtunnel({ ...base(), KUBECONFIG: kc, NODE_NAME: "node0" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the credentials were rejected \(check the service account token or KUBECONFIG\)/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
