import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { loadAgentConfig } from "../../src/agent/config.js";
import { netnsRunner } from "../../src/agent/redirect/index.js";
import type { NetnsHandle } from "../../src/native/index.js";
import { startTestZtunnel, until, type TestZtunnel } from "../fixtures/agent-env.js";
import { meshInventory } from "../fixtures/agent-process.js";
import { PLUGIN_EXECUTABLE } from "../fixtures/cni-exec.js";
import { PodmanSandbox } from "../fixtures/podman-sandbox.js";
import { createNetns, deleteNetns, netnsPath, run, runId } from "../harness/netns.js";
import { describePrivileged } from "../harness/privileged.js";

// The full path with a real container runtime: `podman run` in a node netns (set up as in
// cni-podman.test.ts: bridge + host-local + ours, chained by the agent's own installer) →
// our plugin → the agent (cluster-free, inventory names the container) → in-pod rules →
// ZDS Add to a test ztunnel (the real ZDS client with a recording proxy manager: no proxy
// runs) — all before the container's process starts; `--rm` → DEL → the pod is released
// everywhere. The in-pod rules are read in the pod's netns twice: iptables when the test
// ztunnel receives the pod's netns fd, ip rule/route by the container's first process.

const ROOT = join(import.meta.dirname, "..", "..");
const SUBNET = "10.78.0.0/24";

function uptime(): number {
  return Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
}

/** iptables-save inside the netns behind fd (handed to nsenter as its fd 3). */
function iptablesSaveIn(netnsFd: number): string {
  const r = spawnSync("nsenter", ["--net=/proc/self/fd/3", "iptables-save"], {
    stdio: ["ignore", "pipe", "pipe", netnsFd],
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`iptables-save in the pod netns failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

describePrivileged("podman → plugin → agent → in-pod rules → ZDS Add to a test ztunnel", () => {
  const id = runId();
  const ns = `agpm-${id}`;
  const net = `agp${id}`;
  let dir: string;
  let rootfs: string;
  let agent: Agent | undefined;
  let zt: TestZtunnel | undefined;
  /** System uptime (s) when the test ztunnel started each pod's proxy. */
  const proxyStartedAt = new Map<string, number>();
  /** iptables-save in each pod's netns, read through the fd ZDS delivered. */
  const podRules = new Map<string, string>();

  let sandbox: PodmanSandbox;
  const podmanRun = (name: string, script: string) => sandbox.runContainer(name, script);

  beforeAll(async () => {
    execFileSync(process.execPath, [join(ROOT, "scripts", "build-cni-plugin.mjs")], { stdio: "ignore" });
    dir = mkdtempSync(join(tmpdir(), "agent-podman-"));
    sandbox = new PodmanSandbox({ dir, ns, net, bridge: `cni-${id}`, subnet: SUBNET, applets: ["ip", "cat", "echo"] }).prepare();
    const bin = sandbox.binDir;
    const netDir = sandbox.netDir;
    rootfs = sandbox.rootfs;
    writeFileSync(
      join(dir, "inventory.yaml"),
      meshInventory([
        `{ name: web-${id}, namespace: mesh, uid: 5e5e5e5e-0000-4000-8000-0000${id}, serviceAccount: web }`,
      ]),
    );
    await createNetns(ns);
    const cfg = loadAgentConfig({
      LOCAL_INVENTORY_PATH: join(dir, "inventory.yaml"),
      CNI_AGENT_RUN_DIR: join(dir, "run"),
      ZTUNNEL_UDS_ADDRESS: join(dir, "zt", "ztunnel.sock"),
      MOUNTED_CNI_NET_DIR: netDir,
      MOUNTED_CNI_BIN_DIR: bin,
      AMBIENT_CNI_PLUGIN_BINARY: PLUGIN_EXECUTABLE,
      AMBIENT_IPV6: "false",
      AGENT_HTTP_ADDRESS: "127.0.0.1:0",
      VERIFY_INTERVAL: "0",
    });
    agent = await Agent.start(cfg, { host: netnsRunner(netnsPath(ns)), hostNetnsPath: netnsPath(ns) });
    zt = startTestZtunnel(cfg.zdsSocket);
    const manager = zt.manager;
    const start = manager.start.bind(manager);
    manager.start = async (uid: string, info: unknown, netns: NetnsHandle): Promise<void> => {
      proxyStartedAt.set(uid, uptime());
      podRules.set(uid, iptablesSaveIn(netns.fd));
      await start(uid, info, netns);
    };
    await until(() => zt?.snapshots === 1, "first snapshot");
    const conf = readFileSync(join(netDir, `${net}.conflist`), "utf8");
    expect(conf).toContain('"ambient-cni"');
  }, 180_000);

  afterAll(async () => {
    try {
      if (sandbox) await sandbox.removeAll();
      await agent?.stop();
      await zt?.close();
    } finally {
      await deleteNetns(ns);
      delete process.env.CONTAINERS_CONF;
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it("an enrolled container starts only after its in-pod rules and the ZDS Add; --rm removes it everywhere", async () => {
    const uid = `5e5e5e5e-0000-4000-8000-0000${id}`;
    const r = await podmanRun(
      `web-${id}`,
      "cat /proc/uptime; ip -4 -o addr show dev eth0; echo RULES; ip rule; echo ROUTES; ip route show table 100",
    );
    expect(r.code, r.stderr).toBe(0);
    const containerStartedAt = Number(r.stdout.trim().split(/\s+/)[0]);
    const ip = /inet (10\.78\.0\.\d+)\//.exec(r.stdout)?.[1];
    expect(ip).toBeDefined();
    // ztunnel got the pod (with its netns) before the container's first process ran.
    expect(proxyStartedAt.get(uid)).toBeDefined();
    expect(proxyStartedAt.get(uid)!).toBeLessThanOrEqual(containerStartedAt);
    // The netns ZDS delivered is the pod's, and its redirection was in place by then (DESIGN §7).
    const rules = podRules.get(uid) ?? "";
    expect(rules).toMatch(/-A ISTIO_PRERT .*-j REDIRECT --to-ports 15006/);
    expect(rules).toMatch(/-A ISTIO_OUTPUT .*-j REDIRECT --to-ports 15001/);
    expect(rules).toMatch(/-A ISTIO_PRERT .*-j CONNMARK --set-xmark 0x111\/0xfff/);
    // The container's first process already saw the in-pod policy routing.
    const [, afterRules = ""] = r.stdout.split("RULES");
    const [ipRules = "", routes = ""] = afterRules.split("ROUTES");
    expect(ipRules).toMatch(/fwmark 0x111\/0xfff lookup 100/);
    expect(routes).toMatch(/local (default|0\.0\.0\.0\/0) dev lo/);
    // The container exited; --rm ran the chain's DEL, which released the pod.
    await expect.poll(() => zt!.manager.calls, { timeout: 15_000 }).toEqual([`start ${uid}`, `stop ${uid}`]);
    expect(agent!.lifecycle.uids()).toEqual([]);
    const members = (await run("nsenter", [`--net=${netnsPath(ns)}`, "ipset", "list", "istio-inpod-probes-v4"])).stdout;
    expect(members).not.toContain(ip!);
  });

  it("a container that is not in the mesh starts untouched", async () => {
    const before = zt!.manager.calls.length;
    const r = await podmanRun(`plain-${id}`, "echo started");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("started");
    expect(zt!.manager.calls.length).toBe(before);
  });

  it("ztunnel down: the enrolled container does not start (fail closed)", async () => {
    await zt!.close();
    zt = undefined;
    const marker = join(rootfs, "tmp", "ran");
    const r = await podmanRun(`web-${id}`, "echo ran > /tmp/ran");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no ztunnel connection/);
    expect(() => readFileSync(marker)).toThrow();
    expect(agent!.lifecycle.uids()).toEqual([]);
  });
});
