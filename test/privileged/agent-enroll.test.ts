import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { loadAgentConfig, type AgentConfig } from "../../src/agent/config.js";
import { REDIRECTION_ANNOTATION } from "../../src/agent/enroll/model.js";
import { PROBE_SET_V4, PROBE_SET_V6 } from "../../src/agent/hostrules/probe-snat.js";
import { encodeAddEvent } from "../../src/cni-contract/index.js";
import { netnsRunner } from "../../src/agent/redirect/index.js";
import { PodCgroups, pidOf, postUnix, startTestZtunnel, until, type TestZtunnel } from "../fixtures/agent-env.js";
import { SYSTEM_PYTHON, TAG_SERVER, TCP_CLIENT, waitForLine } from "../harness/child-output.js";
import { FakeKubeServer, kubeConfigFor } from "../harness/fake-kube/index.js";
import { describePrivileged } from "../harness/privileged.js";
import { Topology, type PodInfo } from "../harness/topology.js";

// The node agent for real, Kubernetes mode: the agent runs in this process but acts on a
// topology node netns (its host commands and host netns identity are the node's), pods are
// topology netns with a process in a kubelet-style pod cgroup, the API is the fake server, and
// ztunnel is a ZDS test client. Steps build on each other, in order.

const AMBIENT = { "istio.io/dataplane-mode": "ambient" };

describePrivileged("node agent: Kubernetes enrollment, redirection, ZDS handoff, restart, repair", () => {
  let topo: Topology;
  let kube: FakeKubeServer;
  let dir: string;
  let cfg: AgentConfig;
  let agent: Agent | undefined;
  let zt: TestZtunnel | undefined;
  let cgroups: PodCgroups;
  const procs: ChildProcess[] = [];
  let web: PodInfo;
  let db: PodInfo;
  let optout: PodInfo;
  const uids = new Map<string, string>();

  async function startAgent(): Promise<Agent> {
    return await Agent.start(cfg, {
      host: netnsRunner(topo.node(0).netnsPath),
      hostNetnsPath: topo.node(0).netnsPath,
      kubeConfig: kubeConfigFor(kube),
      retryBaseMs: 50,
    });
  }

  async function save(p: PodInfo): Promise<string> {
    return (await topo.exec(p.ns, "iptables-save", [])).stdout;
  }

  function annotation(name: string): string | undefined {
    const p = kube.store.get("pods", name, "mesh") as { metadata: { annotations?: Record<string, string> } };
    return p.metadata.annotations?.[REDIRECTION_ANNOTATION];
  }

  async function connect(ns: string, host: string, port: number): Promise<string> {
    const r = await topo.exec(ns, SYSTEM_PYTHON, [TCP_CLIENT, host, String(port), "--timeout", "3"]).catch((e: unknown) => ({ stdout: String(e) }));
    return r.stdout.trim();
  }

  async function ipsetMembers(): Promise<string> {
    const node = topo.node(0).ns;
    return (await topo.exec(node, "ipset", ["list", PROBE_SET_V4])).stdout + (await topo.exec(node, "ipset", ["list", PROBE_SET_V6])).stdout;
  }

  function labelMesh(labels: Record<string, string>): void {
    kube.store.mutate("namespaces", "mesh", undefined, (ns) => {
      (ns.metadata as { labels?: Record<string, string> }).labels = labels;
    });
  }

  beforeAll(async () => {
    topo = await Topology.create({ nodes: 1, podsPerNode: 3, ipv6: true });
    cgroups = new PodCgroups(topo.id);
    dir = mkdtempSync(join(tmpdir(), "agent-enroll-"));
    kube = await FakeKubeServer.start();
    kube.store.create("namespaces", { metadata: { name: "mesh" } });
    [web, db, optout] = [topo.pod(0, 0), topo.pod(0, 1), topo.pod(0, 2)];
    for (const [name, p, labels] of [
      ["web", web, {}],
      ["db", db, {}],
      ["optout", optout, { "istio.io/dataplane-mode": "none" }],
    ] as const) {
      const o = kube.store.create("pods", {
        metadata: { name, namespace: "mesh", labels },
        spec: { nodeName: "node-0", serviceAccountName: `${name}-sa`, containers: [{ name: "app", image: "x" }] },
        status: { phase: "Running", podIP: p.ip, podIPs: [{ ip: p.ip }, { ip: p.ip6! }] },
      }) as { metadata: { uid: string } };
      uids.set(name, o.metadata.uid);
      // The pod's "containers": a listener standing in for ztunnel (15001/15006) and the app (8080).
      const child = topo.spawnNode(p.ns, TAG_SERVER, [name, "15001", "15006", "8080"]);
      procs.push(child);
      await waitForLine(child, "ready");
      cgroups.place(pidOf(child), o.metadata.uid);
    }
    cfg = loadAgentConfig({
      NODE_NAME: "node-0",
      CNI_AGENT_RUN_DIR: join(dir, "run"),
      ZTUNNEL_UDS_ADDRESS: join(dir, "zt", "ztunnel.sock"),
      CNI_INSTALL: "false",
      AGENT_HTTP_ADDRESS: "127.0.0.1:0",
      VERIFY_INTERVAL: "1s",
      // The stand-in "ztunnel" here binds unmarked 15001/15006 only: check the rules, not the listeners.
      VERIFY_PROXIES: "false",
      ZDS_ACK_TIMEOUT: "2s",
      RECONCILE_MAX_BACKOFF: "1s",
    });
    agent = await startAgent();
    zt = startTestZtunnel(cfg.zdsSocket);
    await until(() => zt?.snapshots === 1, "the first snapshot");
  }, 120_000);

  afterAll(async () => {
    try {
      await agent?.stop();
      await zt?.close();
      await kube?.stop();
    } finally {
      await topo?.destroy();
      cgroups?.cleanup();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("labelling the namespace enrolls its running pods: rules in their netns, ztunnel has them, ipset, annotation enabled", async () => {
    labelMesh({ ...AMBIENT });
    await expect.poll(() => [annotation("web"), annotation("db")], { timeout: 15_000 }).toEqual(["enabled", "enabled"]);
    expect([...zt!.manager.running.keys()].sort()).toEqual([uids.get("web"), uids.get("db")].sort());
    expect(zt!.manager.running.get(uids.get("web")!)?.info).toEqual({ name: "web", namespace: "mesh", serviceAccount: "web-sa" });
    for (const p of [web, db]) {
      expect(await save(p)).toMatch(/-A ISTIO_OUTPUT .*-j REDIRECT --to-ports 15001/);
      expect((await topo.exec(p.ns, "ip6tables-save", [])).stdout).toMatch(/-A ISTIO_OUTPUT .*-j REDIRECT --to-ports 15001/);
    }
    expect(await save(optout)).not.toContain("ISTIO_");
    expect(annotation("optout")).toBeUndefined();
    const members = await ipsetMembers();
    expect(members).toContain(web.ip);
    expect(members).toContain(db.ip);
    expect(members).toContain(web.ip6);
    expect(members).not.toContain(optout.ip);
  });

  it("the rules really redirect: outbound lands on 15001, inbound on 15006, the node's probes arrive SNAT'ed and unredirected", async () => {
    expect(await connect(web.ns, optout.ip, 8080)).toBe(`web 15001 ${web.ip}`);
    expect(await connect(optout.ns, web.ip, 8080)).toBe(`web 15006 ${optout.ip}`);
    // A kubelet probe from the node: source rewritten to 169.254.7.127, accepted as is.
    expect(await connect(topo.node(0).ns, web.ip, 8080)).toBe("web 8080 169.254.7.127");
    // ztunnel's own sockets (mark 0x539) bypass the redirection.
    const marked = await topo.exec(web.ns, SYSTEM_PYTHON, [TCP_CLIENT, optout.ip, "8080", "--mark", "1337", "--timeout", "3"]);
    expect(marked.stdout.trim()).toBe(`optout 8080 ${web.ip}`);
    expect(await connect(web.ns, optout.ip6!, 8080)).toBe(`web 15001 ${web.ip6}`);
    expect(await connect(optout.ns, web.ip6!, 8080)).toBe(`web 15006 ${optout.ip6}`);
    expect(await connect(topo.node(0).ns, web.ip6!, 8080)).toBe("web 8080 fd16:9254:7127:1337:ffff:ffff:ffff:ffff");
    // A pod outside the mesh is probed with the node's own address.
    const plain = await connect(topo.node(0).ns, optout.ip, 8080);
    expect(plain).toMatch(/^optout 8080 /);
    expect(plain).not.toContain("169.254.7.127");
  });

  it("the verifier detects rules deleted by hand and repairs them within 10 s", async () => {
    const before = await agent!.metrics.verifierRepairs.get();
    const count = (): number => before.values.reduce((s, v) => s + v.value, 0);
    const start = count();
    await topo.exec(web.ns, "iptables", ["-t", "nat", "-F", "ISTIO_OUTPUT"]);
    expect(await connect(web.ns, optout.ip, 8080)).toBe(`optout 8080 ${web.ip}`); // escaped
    const t0 = Date.now();
    await expect.poll(async () => (await agent!.redirector.check(web.netnsPath)).state, { timeout: 10_000, interval: 200 }).toBe("in-place");
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await connect(web.ns, optout.ip, 8080)).toBe(`web 15001 ${web.ip}`);
    const after = await agent!.metrics.verifierRepairs.get();
    expect(after.values.find((v) => v.labels.kind === "rules")?.value ?? 0).toBeGreaterThan(start);
  });

  it("agent restart with running enrolled pods: nothing added twice, the snapshot reaches ztunnel, redirection never lapses", async () => {
    const startsBefore = [...zt!.manager.calls];
    const since = kube.nextSeq;
    await agent!.stop();
    agent = undefined;
    // While the agent is away the pods keep their rules, and a pod vanishes.
    expect(await connect(web.ns, optout.ip, 8080)).toBe(`web 15001 ${web.ip}`);
    await topo.exec(topo.node(0).ns, "ipset", ["add", PROBE_SET_V4, "10.254.254.254"]);
    agent = await startAgent();
    // Its stale probe entry is pruned once the first pass knows who is enrolled.
    expect(await ipsetMembers()).not.toContain("10.254.254.254");
    expect(await ipsetMembers()).toContain(web.ip);
    await expect.poll(() => zt!.snapshots, { timeout: 10_000 }).toBe(2);
    await expect.poll(() => zt!.client.readiness().ready, { timeout: 10_000 }).toBe(true);
    // ztunnel started each proxy once, and stopped none.
    expect(zt!.manager.calls).toEqual(startsBefore);
    expect(zt!.manager.calls.filter((c) => c.startsWith("start")).sort()).toEqual([`start ${uids.get("db")}`, `start ${uids.get("web")}`].sort());
    await expect.poll(() => agent!.lifecycle.all().map((p) => p.state), { timeout: 5000 }).toEqual(["enabled", "enabled"]);
    expect(zt!.manager.calls).toEqual(startsBefore);
    for (const p of [web, db]) expect((await agent.redirector.check(p.netnsPath)).state).toBe("in-place");
    // The pods' annotations never went back to pending (no patch at all: they stayed enabled).
    expect(kube.requests.filter((r) => r.seq >= since && r.verb === "patch")).toEqual([]);
    expect([annotation("web"), annotation("db")]).toEqual(["enabled", "enabled"]);
  });

  it("ztunnel down: a new ambient pod's CNI ADD fails (fail closed); it succeeds once ztunnel is back", async () => {
    const late = await topo.addPod(0, "late");
    kube.store.create("pods", {
      metadata: { name: "late", namespace: "mesh" },
      spec: { nodeName: "node-0", containers: [{ name: "app", image: "x" }] },
      status: { phase: "Pending" },
    });
    const body = encodeAddEvent({ netns: late.netnsPath, podName: "late", podNamespace: "mesh", ips: [{ interface: 0, address: late.ip, prefixLength: 32, gateway: null }] });
    await zt!.close();
    zt = undefined;
    await expect.poll(() => agent!.metrics.ztunnelConnected.get().then((g) => g.values[0]?.value), { timeout: 5000 }).toBe(0);
    const refused = await postUnix(agent!.pluginSocket!, "/cmdadd", body);
    expect(refused.status).toBe(500);
    expect(refused.body).toMatch(/no ztunnel connection/);
    expect(agent!.lifecycle.get(kube.store.get("pods", "late", "mesh")!.metadata.uid as string)).toBeUndefined();
    expect(annotation("late")).toBeUndefined();

    zt = startTestZtunnel(cfg.zdsSocket);
    await expect.poll(() => zt?.snapshots, { timeout: 10_000 }).toBe(1);
    const ok = await postUnix(agent!.pluginSocket!, "/cmdadd", body);
    expect(ok).toEqual({ status: 200, body: JSON.stringify({ enrolled: true }) });
    expect(await save(late)).toMatch(/-j REDIRECT --to-ports 15001/);
    expect([...zt.manager.running.keys()]).toHaveLength(3);
    expect(annotation("late")).toBe("enabled");
    const m = await agent!.metrics.registry.metrics();
    expect(m).toContain('cni_plugin_requests_total{type="add",code="500"} 1');
    expect(m).toContain('cni_plugin_requests_total{type="add",code="200"} 1');
  });

  it("unlabelling removes the pods everywhere: rules, ztunnel, ipset, annotation", async () => {
    labelMesh({});
    await expect.poll(() => agent!.lifecycle.uids().length, { timeout: 15_000 }).toBe(0);
    expect(zt!.manager.running.size).toBe(0);
    for (const p of [web, db]) expect(await save(p)).not.toContain("ISTIO_");
    expect(await ipsetMembers()).not.toContain(web.ip);
    await expect.poll(() => [annotation("web"), annotation("db"), annotation("late")]).toEqual([undefined, undefined, undefined]);
    expect(await connect(web.ns, optout.ip, 8080)).toBe(`optout 8080 ${web.ip}`);
  });
});
