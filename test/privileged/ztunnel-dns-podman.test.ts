import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CniInstaller } from "../../src/agent/install/installer.js";
import { startFakeAgent, type FakeAgent } from "../fixtures/cni-fake-agent.js";
import { PLUGIN_EXECUTABLE } from "../fixtures/cni-exec.js";
import { FakeUpstream } from "../fixtures/dns-upstream.js";
import { PodmanSandbox } from "../fixtures/podman-sandbox.js";
import { Mesh } from "../fixtures/ztunnel-e2e-cluster.js";
import { runId } from "../harness/netns.js";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";

// A podman container (the runtime writes its /etc/resolv.conf; busybox nslookup is the client)
// resolves a mesh name through DNS capture: podman runs in node 0's netns of the 2-node mesh,
// its CNI chain ends with our plugin, and the test plays the agent on ADD: the agent's in-pod
// rules in the container's netns, then a ZDS Add to node 0's real ztunnel, before the
// container's process starts.

const SUBNET = "10.79.0.0/24";
const WEB = "web.default.svc.cluster.local";

describePrivileged("ztunnel DNS proxy: a podman container resolves a mesh name through capture", () => {
  const id = runId();
  let mesh: Mesh | undefined;
  let upstream: FakeUpstream | undefined;
  let sandbox: PodmanSandbox | undefined;
  let installer: CniInstaller | undefined;
  let agent: FakeAgent | undefined;
  let dir = "";
  let plain: PodInfo;
  const enrolled: string[] = [];
  /** When each step of the ADD the test's agent ran finished (a failure message names the slow one). */
  const steps: string[] = [];
  const POD_NAME = `dns-${id}`;
  const POD_UID = `podman-${POD_NAME}`;
  const service = { name: "web", namespace: "default", hostname: WEB, vips: ["10.96.0.10"], ports: { "80": 8080 } };

  beforeAll(async () => {
    mesh = await Mesh.create({ uncaptured: 1 });
    plain = mesh.uncaptured[0]!;
    upstream = await FakeUpstream.start(plain.netnsPath, "0.0.0.0");
    // As in Kubernetes, the pod is known (its API object, here the local config) before the
    // runtime creates its sandbox; its IP comes later and nothing here needs it.
    await mesh.setExtraState({ services: [service], workloads: [{ uid: POD_UID, name: POD_NAME, namespace: "default", serviceAccount: "sa-podman", workloadIps: [], protocol: "HBONE", node: "node0" }] });
    await mesh.startZtunnel(0, { DNS_UPSTREAMS: plain.ip });

    dir = mkdtempSync(join(tmpdir(), "dns-podman-"));
    const runDir = join(dir, "run");
    sandbox = new PodmanSandbox({ dir, ns: mesh.topo.node(0).ns, net: `dn${id}`, bridge: `cnd-${id}`, subnet: SUBNET, applets: ["nslookup", "cat"] }).prepare();
    // The runtime writes the container's resolv.conf; its nameserver is a test address (the
    // upstream pod), so nothing would leave the topology even if capture failed.
    appendFileSync(sandbox.containersConf, `[containers]\ndns_servers = ["${plain.ip}"]\ndns_searches = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]\n`);
    installer = new CniInstaller({ pluginBinary: PLUGIN_EXECUTABLE, binDir: sandbox.binDir, netDir: sandbox.netDir, runDir, isUpgrade: () => false });
    await installer.start();
    agent = await startFakeAgent(runDir);
    const m = mesh;
    agent.decide = async (ev) => {
      // What the agent does on ADD: in-pod rules (DNS capture on by default), then ZDS Add.
      if (ev.podName !== POD_NAME) return { outcome: "refused", reason: `unexpected pod ${ev.podName}` };
      const uid = POD_UID;
      const t0 = performance.now();
      const step = (what: string): void => void steps.push(`${what} ${Math.round(performance.now() - t0)} ms`);
      await m.redirector.apply(ev.netns);
      step("in-pod rules");
      await m.node(0).zds.podAdded(uid, { name: POD_NAME, namespace: "default", serviceAccount: "sa-podman" }, ev.netns);
      step("ZDS Add acked");
      enrolled.push(uid);
      return { outcome: "enrolled" };
    };
  }, 180_000);

  afterAll(async () => {
    try {
      await sandbox?.removeAll();
      for (const uid of enrolled) await mesh?.node(0).zds.podDeleted(uid).catch(() => undefined);
    } finally {
      await installer?.stop();
      await agent?.close();
      await upstream?.stop().catch(() => undefined);
      await mesh?.destroy();
      delete process.env.CONTAINERS_CONF;
      if (dir !== "") rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it("nslookup in the container gets the service VIP from ztunnel, by full and short name", async () => {
    const r = await sandbox!.runContainer(POD_NAME, `cat /etc/resolv.conf; echo ---; nslookup ${WEB}; echo ---; nslookup web`);
    expect(r.code, `${r.stdout}\n${r.stderr}\nADDs that reached the agent: ${agent!.adds.length}; steps done: ${steps.join(", ") || "none"}`).toBe(0);
    const [resolv = "", full = "", short = ""] = r.stdout.split("---");
    expect(resolv).toContain(`nameserver ${plain.ip}`);
    expect(full).toMatch(/Address:\s*10\.96\.0\.10/);
    expect(short).toMatch(/Address:\s*10\.96\.0\.10/);
    expect(enrolled).toHaveLength(1);
    // Answered by ztunnel, not the upstream (which knows no mesh names).
    expect(upstream!.seen.filter((q) => q.name.includes("web"))).toEqual([]);
  }, 120_000);
});
