import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { encodeAddEvent, encodeDelEvent } from "../../src/cni-contract/index.js";
import { PodCgroups, postUnix, startTestZtunnel, until, type TestZtunnel } from "../fixtures/agent-env.js";
import { AGENT_MAIN, agentHttp, hasRedirectRules, meshInventory, runPodProcess, spawnAgent, teardownAgentTest } from "../fixtures/agent-process.js";
import { repoRoot } from "../fixtures/native-build.js";
import { describePrivileged } from "../harness/privileged.js";
import { Topology, type PodInfo } from "../harness/topology.js";

// The compiled `cni-agent` (dist/src/agent/main.js) as a process inside a topology node netns,
// cluster-free: enrollment from a local inventory file, one pod announced by a CNI ADD event
// (as podman does, name only), one found by the /proc scan. Then SIGTERM, restart, DEL.

const PORT = 15990;
const UID_A = "a0a0a0a0-0000-4000-8000-00000000000a";
const UID_B = "b0b0b0b0-0000-4000-8000-00000000000b";

describePrivileged("cni-agent binary on a cluster-free node", () => {
  let topo: Topology;
  let dir: string;
  let env: Record<string, string>;
  let agent: ChildProcess | undefined;
  let stderr = "";
  let zt: TestZtunnel | undefined;
  let cgroups: PodCgroups;
  let a: PodInfo;
  let b: PodInfo;

  function startAgent(): ChildProcess {
    stderr = "";
    return spawnAgent(topo, env, (chunk) => (stderr += chunk));
  }

  const http = (path: string) => agentHttp(topo, PORT, path);

  async function exitOf(child: ChildProcess): Promise<number | null> {
    if (child.exitCode !== null) return child.exitCode;
    return await new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  const rulesIn = (p: PodInfo) => hasRedirectRules(topo, p);

  beforeAll(async () => {
    // `npm test` builds before running; build here only when run on its own from a clean tree.
    if (!existsSync(AGENT_MAIN)) {
      try {
        execFileSync("npm", ["run", "build", "--silent"], { cwd: repoRoot, stdio: "ignore" });
      } catch {
        // tsc still writes its output when a file elsewhere has type errors
      }
    }
    expect(existsSync(AGENT_MAIN)).toBe(true);
    topo = await Topology.create({ nodes: 1, podsPerNode: 2 });
    cgroups = new PodCgroups(topo.id);
    [a, b] = [topo.pod(0, 0), topo.pod(0, 1)];
    dir = mkdtempSync(join(tmpdir(), "agent-main-"));
    for (const d of ["net.d", "bin"]) mkdirSync(join(dir, d));
    writeFileSync(join(dir, "net.d", "10-test.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "test", plugins: [{ type: "bridge" }] }));
    writeFileSync(join(dir, "plugin-exe"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    writeFileSync(
      join(dir, "inventory.yaml"),
      meshInventory([
        `{ name: a, namespace: mesh, uid: ${UID_A}, serviceAccount: sa-a }`,
        `{ name: b, namespace: mesh, uid: ${UID_B}, serviceAccount: sa-b, ips: [${b.ip}] }`,
        `{ name: c, namespace: other, uid: c0c0c0c0-0000-4000-8000-00000000000c }`,
      ]),
    );
    // Pod b already runs: a process in its pod cgroup, inside its netns.
    await runPodProcess(topo, cgroups, b, UID_B, "b");
    env = {
      LOCAL_INVENTORY_PATH: join(dir, "inventory.yaml"),
      CNI_AGENT_RUN_DIR: join(dir, "run"),
      ZTUNNEL_UDS_ADDRESS: join(dir, "zt", "ztunnel.sock"),
      MOUNTED_CNI_NET_DIR: join(dir, "net.d"),
      MOUNTED_CNI_BIN_DIR: join(dir, "bin"),
      AMBIENT_CNI_PLUGIN_BINARY: join(dir, "plugin-exe"),
      AMBIENT_IPV6: "false",
      AGENT_HTTP_ADDRESS: `127.0.0.1:${PORT}`,
      VERIFY_INTERVAL: "1s",
      // The test ztunnel records ZDS calls and binds no listeners: check the rules, not the listeners.
      VERIFY_PROXIES: "false",
      LOG_LEVEL: "info",
    };
    agent = startAgent();
    await until(async () => (await http("/readyz")).status === 200, `agent ready (stderr: ${stderr.slice(-2000)})`, 30_000);
    zt = startTestZtunnel(env.ZTUNNEL_UDS_ADDRESS!);
  }, 180_000);

  afterAll(() => teardownAgentTest({ agent, zt, topo, cgroups, dir }), 60_000);

  it("serves health, chains the plugin, finds the running pod by /proc scan and hands it to ztunnel", async () => {
    expect(await http("/healthz")).toEqual({ status: 200, body: "ok\n" });
    // Only root may talk to the agent: socket 0600 in a 0700 run dir.
    expect(statSync(join(env.CNI_AGENT_RUN_DIR!, "pluginevent.sock")).mode & 0o777).toBe(0o600);
    expect(statSync(env.CNI_AGENT_RUN_DIR!).mode & 0o777).toBe(0o700);
    const conf = JSON.parse(readFileSync(join(dir, "net.d", "10-test.conflist"), "utf8")) as { plugins: { type: string; cni_agent_run_dir?: string }[] };
    expect(conf.plugins.map((p) => p.type)).toEqual(["bridge", "ambient-cni"]);
    expect(conf.plugins[1]?.cni_agent_run_dir).toBe(env.CNI_AGENT_RUN_DIR);
    await expect.poll(() => [...zt!.manager.running.keys()], { timeout: 10_000 }).toEqual([UID_B]);
    expect(zt!.manager.running.get(UID_B)?.info).toEqual({ name: "b", namespace: "mesh", serviceAccount: "sa-b" });
    expect(await rulesIn(b)).toBe(true);
  });

  it("a CNI ADD naming only the pod (podman) enrolls it with the event's netns; the path is persisted", async () => {
    const sock = join(env.CNI_AGENT_RUN_DIR!, "pluginevent.sock");
    const add = await postUnix(sock, "/cmdadd", encodeAddEvent({ netns: a.netnsPath, podName: "a", podNamespace: "", ips: [{ interface: 0, address: a.ip, prefixLength: 32, gateway: null }] }));
    expect(add).toEqual({ status: 200, body: JSON.stringify({ enrolled: true }) });
    expect(zt!.manager.running.has(UID_A)).toBe(true);
    expect(await rulesIn(a)).toBe(true);
    const saved = JSON.parse(readFileSync(join(env.CNI_AGENT_RUN_DIR!, "state", "pod-netns.json"), "utf8")) as { pods: Record<string, string> };
    expect(saved.pods[UID_A]).toBe(a.netnsPath);
    // Not in the inventory: passed through.
    const other = await postUnix(sock, "/cmdadd", encodeAddEvent({ netns: a.netnsPath, podName: "zzz", podNamespace: "", ips: [] }));
    expect(other.status).toBe(200);
    expect(JSON.parse(other.body)).toMatchObject({ enrolled: false });
    const m = (await http("/metrics")).body;
    expect(m).toContain("ztunnel_connected 1");
    expect(m).toContain('cni_plugin_requests_total{type="add",code="200"} 2');
    expect(m).toMatch(/enrolled_pods\{state="enabled"\} 2/);
  });

  it("SIGTERM: exits 0, removes its socket, leaves the pods redirected; a restart re-adds nothing and ztunnel gets the snapshot", async () => {
    const callsBefore = [...zt!.manager.calls];
    agent!.kill("SIGTERM");
    expect(await exitOf(agent!)).toBe(0);
    expect(existsSync(join(env.CNI_AGENT_RUN_DIR!, "pluginevent.sock"))).toBe(false);
    expect(await rulesIn(a)).toBe(true);
    expect(await rulesIn(b)).toBe(true);
    const snapshots = zt!.snapshots;
    agent = startAgent();
    await until(async () => (await http("/readyz")).status === 200, `restarted agent ready (stderr: ${stderr.slice(-2000)})`, 30_000);
    await expect.poll(() => zt!.snapshots, { timeout: 10_000 }).toBe(snapshots + 1);
    await expect.poll(async () => (await http("/metrics")).body, { timeout: 10_000 }).toMatch(/enrolled_pods\{state="enabled"\} 2/);
    expect(zt!.manager.calls).toEqual(callsBefore);
    expect([...zt!.manager.running.keys()].sort()).toEqual([UID_A, UID_B]);
  });

  it("a CNI DEL releases the pod on a cluster-free node", async () => {
    const sock = join(env.CNI_AGENT_RUN_DIR!, "pluginevent.sock");
    const del = await postUnix(sock, "/cmddel", encodeDelEvent({ containerId: "c".repeat(64), netns: a.netnsPath, podName: "a", podNamespace: "" }));
    expect(del.status).toBe(200);
    expect(zt!.manager.running.has(UID_A)).toBe(false);
    const saved = JSON.parse(readFileSync(join(env.CNI_AGENT_RUN_DIR!, "state", "pod-netns.json"), "utf8")) as { pods: Record<string, string> };
    expect(saved.pods[UID_A]).toBeUndefined();
  });

  it("a malformed variable stops the agent at once with exit code 2, naming it", async () => {
    const child = spawn(process.execPath, [AGENT_MAIN], { env: { ...process.env, ...env, VERIFY_INTERVAL: "often" }, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    expect(await exitOf(child)).toBe(2);
    // One plain line a human can act on (the JSON fatal log follows it).
    expect(err).toContain('cni-agent: VERIFY_INTERVAL: "often" is not a duration');
  });
});
