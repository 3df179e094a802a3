import { execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CONTAINER_ID_HEADER, encodeAddEvent, encodeDelEvent } from "../../src/cni-contract/index.js";
import { PodCgroups, postUnixWith, startListeningZtunnel, until, type ListeningManager, type TestZtunnel } from "../fixtures/agent-env.js";
import { AGENT_MAIN, agentHttp, hasRedirectRules, meshInventory, runPodProcess, spawnAgent, teardownAgentTest } from "../fixtures/agent-process.js";
import { killAndWait } from "../harness/netns.js";
import { repoRoot } from "../fixtures/native-build.js";
import { describePrivileged } from "../harness/privileged.js";
import { Topology, type PodInfo } from "../harness/topology.js";

// Issue 16 items 2 and 6, issue 21 item 3: the compiled cni-agent (cluster-free) with a test
// ztunnel that binds ztunnel's marked listeners in each pod it is given. A stale CNI DEL and a
// failed CNI ADD leave a running pod served; listeners lost under ztunnel are found in the
// pod's own kernel, shown by /readyz and a gauge until repaired; rules flushed while the agent
// is down are back when it starts.

const PORT = 15991;
const UID_A = "a1a1a1a1-0000-4000-8000-00000000000a";
const UID_B = "b1b1b1b1-0000-4000-8000-00000000000b";

describePrivileged("cni-agent keeps pods served: sandbox identity, kernel verifier, repair at start", () => {
  let topo: Topology;
  let dir: string;
  let env: Record<string, string>;
  let agent: ChildProcess | undefined;
  let stderr = "";
  let zt: (TestZtunnel & { manager: ListeningManager }) | undefined;
  let cgroups: PodCgroups;
  let a: PodInfo;
  let b: PodInfo;
  let sock: string;

  function startAgent(): ChildProcess {
    stderr = "";
    return spawnAgent(topo, env, (chunk) => (stderr += chunk));
  }

  const http = (path: string) => agentHttp(topo, PORT, path);

  const rulesIn = (p: PodInfo) => hasRedirectRules(topo, p);

  /** ztunnel's marked listeners as the pod's kernel lists them. */
  async function markedListeners(p: PodInfo): Promise<number[]> {
    const out = (await topo.exec(p.ns, "ss", ["-Htlne"])).stdout;
    return out
      .split("\n")
      .filter((l) => /fwmark:0x539\b/.test(l))
      .map((l) => Number(l.trim().split(/\s+/)[3]?.split(":").pop()))
      .sort();
  }

  beforeAll(async () => {
    if (!existsSync(AGENT_MAIN)) execFileSync("npm", ["run", "build", "--silent"], { cwd: repoRoot, stdio: "ignore" });
    topo = await Topology.create({ nodes: 1, podsPerNode: 2 });
    cgroups = new PodCgroups(topo.id);
    [a, b] = [topo.pod(0, 0), topo.pod(0, 1)];
    dir = mkdtempSync(join(tmpdir(), "agent-repair-"));
    writeFileSync(
      join(dir, "inventory.yaml"),
      meshInventory([
        `{ name: a, namespace: mesh, uid: ${UID_A}, serviceAccount: sa-a }`,
        `{ name: b, namespace: mesh, uid: ${UID_B}, serviceAccount: sa-b, ips: [${b.ip}] }`,
      ]),
    );
    await runPodProcess(topo, cgroups, b, UID_B, "b");
    mkdirSync(join(dir, "zt"));
    env = {
      LOCAL_INVENTORY_PATH: join(dir, "inventory.yaml"),
      CNI_AGENT_RUN_DIR: join(dir, "run"),
      ZTUNNEL_UDS_ADDRESS: join(dir, "zt", "ztunnel.sock"),
      CNI_INSTALL: "false",
      AMBIENT_IPV6: "false",
      HOST_PROBE_SNAT: "false",
      AGENT_HTTP_ADDRESS: `127.0.0.1:${PORT}`,
      VERIFY_INTERVAL: "500ms",
      LOG_LEVEL: "info",
    };
    sock = join(env.CNI_AGENT_RUN_DIR!, "pluginevent.sock");
    agent = startAgent();
    await until(async () => (await http("/readyz")).status === 200, `agent ready (stderr: ${stderr.slice(-2000)})`, 30_000);
    zt = startListeningZtunnel(env.ZTUNNEL_UDS_ADDRESS!);
    await until(() => zt?.manager.running.has(UID_B) === true, "pod b handed to ztunnel", 15_000);
    const add = await postUnixWith(sock, "/cmdadd", encodeAddEvent({ netns: a.netnsPath, podName: "a", podNamespace: "", ips: [{ interface: 0, address: a.ip, prefixLength: 32, gateway: null }] }), { [CONTAINER_ID_HEADER]: "ca11" });
    expect(add.status, add.body).toBe(200);
  }, 180_000);

  afterAll(() => teardownAgentTest({ agent, zt, topo, cgroups, dir }), 60_000);

  it("both pods are served: rules in, ztunnel's marked listeners in, ready, nothing unhealthy", async () => {
    expect(await rulesIn(a)).toBe(true);
    expect(await rulesIn(b)).toBe(true);
    expect(await markedListeners(a)).toEqual([15001, 15006, 15008, 15053]);
    expect(await markedListeners(b)).toEqual([15001, 15006, 15008, 15053]);
    const ready = await http("/readyz");
    expect(ready.status, ready.body + stderr.split("\n").filter((l) => /not in the pod|still missing|verification/.test(l)).slice(0, 3).join("\n")).toBe(200);
    expect((await http("/metrics")).body).toMatch(/^verifier_unhealthy_pods 0$/m);
    expect((await http("/metrics")).body).toMatch(/^istio_cni_pod_ready_seconds_count 1$/m);
  });

  it("a stale CNI DEL (another container of the pod) and a failed ADD (CNI_NETNS that does not exist) leave the running pod served", async () => {
    const calls = [...zt!.manager.calls];
    const del = await postUnixWith(sock, "/cmddel", encodeDelEvent({ containerId: "c0ld", netns: "/var/run/netns/old-sandbox", podName: "a", podNamespace: "" }), {});
    expect(del.status).toBe(200);
    const delB = await postUnixWith(sock, "/cmddel", encodeDelEvent({ containerId: "c0ld", netns: "", podName: "b", podNamespace: "" }), {});
    expect(delB.status).toBe(200);
    const failed = await postUnixWith(sock, "/cmdadd", encodeAddEvent({ netns: `/var/run/netns/gone-${topo.id}`, podName: "a", podNamespace: "", ips: [] }), { [CONTAINER_ID_HEADER]: "ca22" });
    expect(failed.status).toBe(500);
    expect(failed.body).toMatch(/could not be added/);
    // Nothing was stopped in ztunnel, nothing changed in the pods, readiness stays green.
    expect(zt!.manager.calls, stderr.split("\n").filter((l) => /listener|verif|DEL|ADD/.test(l)).join("\n")).toEqual(calls);
    expect([...zt!.manager.running.keys()].sort()).toEqual([UID_A, UID_B].sort());
    for (const p of [a, b]) {
      expect(await rulesIn(p)).toBe(true);
      expect(await markedListeners(p)).toEqual([15001, 15006, 15008, 15053]);
    }
    expect((await http("/readyz")).status).toBe(200);
  });

  it("listeners lost under ztunnel: found in the pod's kernel, shown by /readyz and the gauge while ztunnel cannot rebuild them, then repaired", async () => {
    zt!.manager.failStarts.add(UID_B);
    zt!.manager.dropListeners(UID_B);
    expect(await markedListeners(b)).toEqual([]);
    await until(async () => {
      const r = await http("/readyz");
      return r.status === 503 && r.body.includes("pod mesh/b not served") && r.body.includes("ztunnel listener tcp/15001 missing");
    }, "readiness names the unserved pod", 15_000);
    expect((await http("/metrics")).body).toMatch(/^verifier_unhealthy_pods 1$/m);
    zt!.manager.failStarts.delete(UID_B);
    await until(async () => (await http("/readyz")).status === 200, `repaired (stderr: ${stderr.slice(-1500)})`, 15_000);
    expect(await markedListeners(b)).toEqual([15001, 15006, 15008, 15053]);
    const m = (await http("/metrics")).body;
    expect(m).toMatch(/^verifier_unhealthy_pods 0$/m);
    expect(Number(/^verifier_repairs_total\{kind="proxies"\} (\d+)/m.exec(m)?.[1] ?? 0)).toBeGreaterThan(0);
    expect(stderr).toMatch(/ztunnel's listeners are not in the pod; re-sending Add/);
  });

  it("rules flushed while the agent is down (a reboot's lost redirection) are back when it starts", async () => {
    agent!.kill("SIGTERM");
    await killAndWait(agent!);
    for (const p of [a, b]) {
      await topo.exec(p.ns, "iptables", ["-t", "nat", "-F"]);
      await topo.exec(p.ns, "iptables", ["-t", "mangle", "-F"]);
      expect(await rulesIn(p)).toBe(false);
    }
    agent = startAgent();
    await until(async () => (await http("/readyz")).status === 200, `restarted agent ready (stderr: ${stderr.slice(-2000)})`, 30_000);
    for (const p of [a, b]) expect(await rulesIn(p)).toBe(true);
    // The pods are still served end to end: an outbound connection from a lands on ztunnel's 15001.
    expect([...zt!.manager.running.keys()].sort()).toEqual([UID_A, UID_B].sort());
  });

  it("a pod whose netns was recreated while the agent was down (same path, new namespace) is enrolled in the new one at start", async () => {
    agent!.kill("SIGTERM");
    await killAndWait(agent!);
    const calls = zt!.manager.calls.length;
    // The sandbox's netns file now names a fresh namespace: no rules, no listeners.
    execFileSync("ip", ["netns", "del", a.ns]);
    execFileSync("ip", ["netns", "add", a.ns]);
    expect(await rulesIn(a)).toBe(false);
    expect(await markedListeners(a)).toEqual([]);
    agent = startAgent();
    await until(async () => (await http("/readyz")).status === 200, `restarted agent ready (stderr: ${stderr.slice(-2000)})`, 30_000);
    await until(async () => (await markedListeners(a)).length === 4, `ztunnel's listeners in the new netns (ztunnel was told: ${zt!.manager.calls.slice(calls).join(", ")})`, 15_000);
    expect(await markedListeners(a)).toEqual([15001, 15006, 15008, 15053]);
    expect(await rulesIn(a)).toBe(true);
    // ztunnel was told: the old proxy stopped, a new one started in the new namespace.
    expect(zt!.manager.calls.slice(calls)).toEqual([`stop ${UID_A}`, `start ${UID_A}`]);
    expect(await rulesIn(b)).toBe(true);
  });
});
