import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CniInstaller } from "../../src/agent/install/installer.js";
import { startFakeAgent, type FakeAgent } from "../fixtures/cni-fake-agent.js";
import { PLUGIN_EXECUTABLE } from "../fixtures/cni-exec.js";
import { PodmanSandbox } from "../fixtures/podman-sandbox.js";
import { createNetns, deleteNetns, run, runId } from "../harness/netns.js";
import { describePrivileged } from "../harness/privileged.js";

// podman as the real container runtime: a CNI network whose chain is the reference bridge +
// host-local plugins followed by ours (chained in by our installer), podman running inside a
// node netns we create, with per-test storage, CNI dirs and containers.conf (PodmanSandbox).
const ROOT = join(import.meta.dirname, "..", "..");
const SUBNET = "10.77.0.0/24";

describePrivileged("CNI plugin under podman", () => {
  const id = runId();
  const ns = `cnipm-${id}`;
  const net = `amb${id}`;
  let dir: string;
  let runDir: string;
  let agent: FakeAgent | undefined;
  let installer: CniInstaller;
  let rootfs: string;

  let sandbox: PodmanSandbox;
  const podman = (args: string[]) => sandbox.podman(args);
  const podmanRun = (name: string, script: string) => sandbox.runContainer(name, script);

  beforeAll(async () => {
    execFileSync(process.execPath, [join(ROOT, "scripts", "build-cni-plugin.mjs")], { stdio: "ignore" });
    dir = mkdtempSync(join(tmpdir(), "cni-podman-"));
    runDir = join(dir, "run");
    sandbox = new PodmanSandbox({ dir, ns, net, bridge: `cni-${id}`, subnet: SUBNET, applets: ["ip", "cat", "echo", "touch"] }).prepare();
    const bin = sandbox.binDir;
    const netDir = sandbox.netDir;
    rootfs = sandbox.rootfs;

    // Our installer copies the executable and chains it after bridge/host-local.
    installer = new CniInstaller({ pluginBinary: PLUGIN_EXECUTABLE, binDir: bin, netDir, runDir, isUpgrade: () => false });
    const report = await installer.start();
    expect(report.conflist).toMatchObject({ action: "write", target: `${net}.conflist` });

    await createNetns(ns);
    agent = await startFakeAgent(runDir);
    // Fail early and clearly if podman itself cannot run here.
    const info = await podman(["network", "ls", "--format", "{{.Name}}"]);
    expect(info.stdout + info.stderr).toContain(net);
  }, 180_000);

  afterAll(async () => {
    try {
      if (sandbox) await sandbox.removeAll();
    } finally {
      await installer?.stop();
      await agent?.close();
      // The bridge, its addresses and any rules podman's plugins added live in this netns.
      await deleteNetns(ns);
      delete process.env.CONTAINERS_CONF;
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it("runs our plugin for ADD and DEL; the agent gets the netns and IPs; the container starts", async () => {
    if (!agent) throw new Error("no agent");
    const seen: { netns: string; addrInNetns: string }[] = [];
    agent.decide = async (ev) => {
      // Prove the netns path is the pod's: its eth0 holds the IP the event reports.
      const { stdout } = await run("nsenter", [`--net=${ev.netns}`, "ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
      seen.push({ netns: ev.netns, addrInNetns: stdout });
      return { outcome: "enrolled" };
    };
    const r = await podmanRun(`ok-${id}`, "ip -4 -o addr show dev eth0; echo started");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("started");
    const containerIp = /inet (10\.77\.0\.\d+)\/24/.exec(r.stdout)?.[1];
    expect(containerIp).toBeDefined();

    expect(agent.adds).toHaveLength(1);
    const ev = agent.adds[0];
    expect(ev?.podName).toBe(`ok-${id}`);
    expect(ev?.podNamespace).toBe(""); // podman passes only K8S_POD_NAME
    expect(ev?.netns).toMatch(/^\/(var\/)?run\/netns\/[\w-]+$/);
    expect(ev?.ips).toEqual([{ interface: expect.any(Number) as number, address: containerIp, prefixLength: 24, gateway: "10.77.0.1" }]);
    expect(seen[0]?.addrInNetns).toContain(`inet ${containerIp}/24`);

    // --rm tears the sandbox down: podman runs the chain's DEL, we notify the agent.
    await expect.poll(() => agent?.dels.length, { timeout: 10_000 }).toBe(1);
    expect(agent.dels[0]).toMatchObject({ podName: `ok-${id}`, netns: ev?.netns });
    expect(agent.dels[0]?.containerId).toMatch(/^[0-9a-f]{64}$/);
  });

  it("a refusing agent makes podman run fail with our message, and the container never starts", async () => {
    if (!agent) throw new Error("no agent");
    agent.decide = () => ({ outcome: "refused", reason: "pod not in this node's inventory" });
    const marker = join(rootfs, "tmp", "ran");
    const r = await podmanRun(`no-${id}`, "touch /tmp/ran");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("pod not in this node's inventory");
    expect(existsSync(marker)).toBe(false);
    const ps = await podman(["ps", "-a", "--format", "{{.Names}}"]);
    expect(ps.stdout).not.toContain(`no-${id}`);
  });

  it("the installer repairs a deleted binary and a removed chain entry within 2 s, and pods start again", async () => {
    if (!agent) throw new Error("no agent");
    agent.decide = () => ({ outcome: "enrolled" });
    const conflist = join(dir, "net.d", `${net}.conflist`);
    const types = (): string[] => (JSON.parse(readFileSync(conflist, "utf8")) as { plugins: { type: string }[] }).plugins.map((p) => p.type);
    rmSync(installer.binaryPath);
    const doc = JSON.parse(readFileSync(conflist, "utf8")) as { plugins: { type: string }[] };
    writeFileSync(conflist, JSON.stringify({ ...doc, plugins: doc.plugins.filter((p) => p.type !== "ambient-cni") }));
    const start = Date.now();
    await expect.poll(() => existsSync(installer.binaryPath) && types().join() === "bridge,ambient-cni", { timeout: 2000, interval: 20 }).toBe(true);
    expect(Date.now() - start).toBeLessThan(2000);
    const before = agent.adds.length;
    const r = await podmanRun(`rep-${id}`, "echo started");
    expect(r.code, r.stderr).toBe(0);
    expect(agent.adds.length).toBe(before + 1);
  });

  it("an agent that is down makes podman run fail (fail closed)", async () => {
    await agent?.close();
    agent = undefined;
    const r = await podmanRun(`down-${id}`, "touch /tmp/ran");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("ambient agent unreachable");
    expect(existsSync(join(rootfs, "tmp", "ran"))).toBe(false);
    // host-local released every address again (DEL ran for the failed ADDs too).
    const ipam = join(dir, "ipam", net);
    const leases = existsSync(ipam) ? readdirSync(ipam).filter((f) => /^10\.77\./.test(f)) : [];
    expect(leases).toEqual([]);
    expect(readFileSync(join(dir, "containers.conf"), "utf8")).toContain('network_backend = "cni"');
  });
});
