import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, expect, it } from "vitest";
import { ProbeSnat } from "../../src/agent/hostrules/probe-snat.js";
import { CniInstaller } from "../../src/agent/install/installer.js";
import { PLUGIN_KUBECONFIG_NAME } from "../../src/agent/install/kubeconfig.js";
import { netnsRunner } from "../../src/agent/redirect/runner.js";
import type { IptablesVariant } from "../../src/agent/redirect/index.js";
import { createNetns, deleteNetns, execIn, netnsPath, runId } from "../harness/netns.js";
import { describePrivileged } from "../harness/privileged.js";

// deploy/uninstall/cni-cleanup.mjs (run on every node by the uninstall DaemonSet) removes what a
// stopped agent leaves behind: set up exactly that with the agent's own installer and probe SNAT
// code in a test netns and temp dirs, run the compiled script there, and check that our parts
// are gone while a neighbour's CNI entry, rule and ipset stay.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SCRIPT = join(ROOT, "deploy", "uninstall", "cni-cleanup.mjs");

describePrivileged("deploy/uninstall/cni-cleanup.mjs", () => {
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(() => {
    // The script imports the compiled agent (as in the image): npm test builds first.
    if (!existsSync(join(ROOT, "dist", "src", "agent", "install", "installer.js"))) throw new Error("dist/ missing: run `npm run build`");
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it.each(["nft", "legacy"] as IptablesVariant[])("removes the plugin, its files and the %s probe SNAT, and nothing else", async (variant) => {
    const ns = `dc${runId()}`;
    cleanups.push(() => deleteNetns(ns));
    await createNetns(ns);
    const tmp = await mkdtemp(join(tmpdir(), "deploy-cleanup-"));
    cleanups.push(() => rm(tmp, { recursive: true, force: true }));
    const [binDir, netDir, runDir, saDir] = ["bin", "net.d", "run", "sa"].map((d) => join(tmp, d)) as [string, string, string, string];
    for (const d of [binDir, netDir, runDir, saDir]) await mkdir(d, { recursive: true });

    // What a running agent installs: binary, kubeconfig, conflist entry (next to a neighbour's plugin).
    const plugin = join(tmp, "ambient-cni-build");
    await writeFile(plugin, "#!/bin/sh\n", { mode: 0o755 });
    await writeFile(join(saDir, "token"), "t0ken");
    await writeFile(
      join(netDir, "10-net.conflist"),
      JSON.stringify({ cniVersion: "1.0.0", name: "net", plugins: [{ type: "bridge", bridge: "cni0" }, { type: "portmap" }] }),
    );
    const installer = new CniInstaller({
      pluginBinary: plugin,
      binDir,
      netDir,
      runDir,
      kube: { server: "https://10.96.0.1:443", tokenFile: join(saDir, "token") },
      isUpgrade: () => true,
      resyncMs: 60_000,
    });
    await installer.start();
    await installer.stop();
    await mkdir(join(runDir, "state"), { recursive: true });
    await writeFile(join(runDir, "state", "pod-netns.json"), "{}");
    expect(await readdir(binDir)).toEqual(["ambient-cni"]);
    expect(existsSync(join(runDir, PLUGIN_KUBECONFIG_NAME))).toBe(true);
    expect(await readFile(join(netDir, "10-net.conflist"), "utf8")).toContain("ambient-cni");

    // The node-side probe SNAT as the agent programs it, plus a neighbour's rule and set.
    const node = netnsRunner(netnsPath(ns));
    const snat = new ProbeSnat(node, { ipv6: true, probeAddress: "169.254.7.127", probeAddress6: "fd16:9254:7127:1337:ffff:ffff:ffff:ffff", variant });
    await snat.ensure();
    await snat.addPod(["10.0.0.5", "fd00::5"]);
    await execIn(ns, "ipset", ["create", "neighbour", "hash:ip"]);
    await execIn(ns, `iptables-${variant}`, ["-w", "-t", "nat", "-A", "POSTROUTING", "-s", "10.9.0.0/16", "-j", "MASQUERADE"]);
    const saveBefore = (await execIn(ns, `iptables-${variant}-save`, ["-t", "nat"])).stdout;
    expect(saveBefore).toContain("-A POSTROUTING -j ISTIO_POSTRT");

    const out = await execIn(ns, "env", [`CNI_AGENT_RUN_DIR=${runDir}`, `MOUNTED_CNI_BIN_DIR=${binDir}`, `MOUNTED_CNI_NET_DIR=${netDir}`, "LOG_LEVEL=silent", process.execPath, SCRIPT]);
    const report = JSON.parse(out.stdout.trim().split("\n").at(-1)!) as { msg: string; removed: string[]; hostRules: string[] };
    expect(report.msg).toBe("ambient node cleanup done");
    expect(report.hostRules).toEqual(expect.arrayContaining([`iptables-${variant} nat ISTIO_POSTRT`, `ip6tables-${variant} nat ISTIO_POSTRT`, "ipset istio-inpod-probes-v4", "ipset istio-inpod-probes-v6"]));

    // CNI: our entry, binary, kubeconfig and state gone; the neighbour's chain intact.
    expect(await readdir(binDir)).toEqual([]);
    expect(await readdir(runDir)).toEqual(["state"]);
    expect(await readdir(join(runDir, "state"))).toEqual([]);
    expect(JSON.parse(await readFile(join(netDir, "10-net.conflist"), "utf8"))).toMatchObject({ plugins: [{ type: "bridge" }, { type: "portmap" }] });
    expect(await readFile(join(netDir, "10-net.conflist"), "utf8")).not.toContain("ambient");

    // Host rules: ours gone in both families, the neighbour's rule and set stay.
    const v4 = (await execIn(ns, `iptables-${variant}-save`, ["-t", "nat"])).stdout;
    const v6 = (await execIn(ns, `ip6tables-${variant}-save`, ["-t", "nat"])).stdout;
    expect(v4).not.toContain("ISTIO_POSTRT");
    expect(v6).not.toContain("ISTIO_POSTRT");
    expect(v4).toContain("-A POSTROUTING -s 10.9.0.0/16 -j MASQUERADE");
    const sets = (await execIn(ns, "ipset", ["list", "-n"])).stdout.split("\n").filter((s) => s !== "");
    expect(sets).toEqual(["neighbour"]);

    // Running it again on a clean node is fine (a DaemonSet pod may restart).
    const again = await execIn(ns, "env", [`CNI_AGENT_RUN_DIR=${runDir}`, `MOUNTED_CNI_BIN_DIR=${binDir}`, `MOUNTED_CNI_NET_DIR=${netDir}`, "LOG_LEVEL=silent", process.execPath, SCRIPT]);
    expect(JSON.parse(again.stdout.trim().split("\n").at(-1)!)).toMatchObject({ hostRules: [] });
  });
});
