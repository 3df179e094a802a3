import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CniInstaller, type InstallerOptions } from "../../src/agent/install/installer.js";

// The installer against real directories (no root needed): atomic copy, kubeconfig 0600,
// conflist chaining keeping the mode, repair from file events within 2 s, cleanup.
interface Env {
  root: string;
  bin: string;
  net: string;
  run: string;
  token: string;
  ca: string;
  plugin: string;
}

const made: string[] = [];
const installers: CniInstaller[] = [];

function env(): Env {
  const root = mkdtempSync(join(tmpdir(), "cni-inst-"));
  made.push(root);
  const e = {
    root,
    bin: join(root, "opt/cni/bin"),
    net: join(root, "etc/cni/net.d"),
    run: join(root, "run/istio-cni"),
    token: join(root, "sa/token"),
    ca: join(root, "sa/ca.crt"),
    plugin: join(root, "src-ambient-cni"),
  };
  mkdirSync(join(root, "sa"));
  mkdirSync(e.net, { recursive: true });
  writeFileSync(e.token, "token-1\n");
  writeFileSync(e.ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  writeFileSync(e.plugin, "#!/bin/sh\necho plugin v1\n");
  return e;
}

function installer(e: Env, extra: Partial<InstallerOptions> = {}): CniInstaller {
  const i = new CniInstaller({
    pluginBinary: e.plugin,
    binDir: e.bin,
    netDir: e.net,
    runDir: e.run,
    plugin: { podNamespace: "istio-system" },
    kube: { server: "https://10.96.0.1:443", tokenFile: e.token, caFile: e.ca },
    isUpgrade: () => false,
    resyncMs: 60_000, // repairs below must come from file events, not from the resync
    ...extra,
  });
  installers.push(i);
  return i;
}

async function within(ms: number, cond: () => boolean): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - start;
}

function pluginTypes(file: string): string[] {
  const doc = JSON.parse(readFileSync(file, "utf8")) as { plugins: { type: string }[] };
  return doc.plugins.map((p) => p.type);
}

function noTempFiles(dir: string): void {
  expect(readdirSync(dir).filter((n) => n.includes(".tmp-"))).toEqual([]);
}

afterEach(async () => {
  for (const i of installers.splice(0)) await i.stop();
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("CNI installer", () => {
  it("installs binary, kubeconfig and conflist entry, keeping the config's mode", async () => {
    const e = env();
    writeFileSync(join(e.net, "10-bridge.conf"), JSON.stringify({ cniVersion: "1.0.0", name: "b", type: "bridge" }), { mode: 0o640 });
    const report = await installer(e).start();
    expect(report).toMatchObject({ binary: "installed", kubeconfig: "written", conflist: { action: "write", target: "10-bridge.conflist" } });

    const bin = join(e.bin, "ambient-cni");
    expect(readFileSync(bin, "utf8")).toBe(readFileSync(e.plugin, "utf8"));
    expect(statSync(bin).mode & 0o777).toBe(0o755);

    const kc = join(e.run, "ambient-cni-kubeconfig");
    expect(statSync(kc).mode & 0o777).toBe(0o600);
    const doc = JSON.parse(readFileSync(kc, "utf8")) as { users: { user: { token: string } }[]; clusters: { cluster: Record<string, string> }[] };
    expect(doc.users[0]?.user.token).toBe("token-1");
    expect(doc.clusters[0]?.cluster.server).toBe("https://10.96.0.1:443");
    expect(Buffer.from(doc.clusters[0]?.cluster["certificate-authority-data"] ?? "", "base64").toString()).toContain("BEGIN CERTIFICATE");

    const list = join(e.net, "10-bridge.conflist");
    expect(existsSync(join(e.net, "10-bridge.conf"))).toBe(false);
    expect(statSync(list).mode & 0o777).toBe(0o640);
    expect(pluginTypes(list)).toEqual(["bridge", "ambient-cni"]);
    const ours = (JSON.parse(readFileSync(list, "utf8")) as { plugins: Record<string, unknown>[] }).plugins[1];
    expect(ours).toMatchObject({ cni_agent_run_dir: e.run, pod_namespace: "istio-system", kubeconfig: kc, ambient_enabled: true });
    noTempFiles(e.bin);
    noTempFiles(e.net);
  });

  it("repairs a deleted binary, a removed entry, a deleted kubeconfig and a rotated token within 2 s", async () => {
    const e = env();
    writeFileSync(join(e.net, "10-k.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "k", plugins: [{ type: "ptp" }] }));
    await installer(e).start();
    const bin = join(e.bin, "ambient-cni");
    const list = join(e.net, "10-k.conflist");
    const kc = join(e.run, "ambient-cni-kubeconfig");

    rmSync(bin);
    await within(2000, () => existsSync(bin));

    writeFileSync(bin, "corrupted"); // replaced in place by someone else
    await within(2000, () => readFileSync(bin, "utf8") === readFileSync(e.plugin, "utf8"));

    writeFileSync(list, JSON.stringify({ cniVersion: "1.0.0", name: "k", plugins: [{ type: "ptp" }, { type: "portmap" }] }));
    await within(2000, () => pluginTypes(list).join() === "ptp,portmap,ambient-cni");

    rmSync(list);
    writeFileSync(join(e.net, "20-new.conf"), JSON.stringify({ cniVersion: "1.0.0", name: "n", type: "bridge" }));
    await within(2000, () => existsSync(join(e.net, "20-new.conflist")) && pluginTypes(join(e.net, "20-new.conflist")).includes("ambient-cni"));

    rmSync(kc);
    await within(2000, () => existsSync(kc));
    writeFileSync(e.token, "token-2\n");
    await within(2000, () => readFileSync(kc, "utf8").includes("token-2"));
    noTempFiles(e.bin);
  });

  it("waits for a CNI config and chains into it when it appears", async () => {
    const e = env();
    const report = await installer(e).start();
    expect(report.conflist).toEqual({ action: "wait", reason: "no CNI config present yet" });
    writeFileSync(join(e.net, "05-cbr0.conflist"), JSON.stringify({ cniVersion: "0.4.0", name: "cbr0", plugins: [{ type: "bridge" }] }));
    await within(2000, () => pluginTypes(join(e.net, "05-cbr0.conflist")).includes("ambient-cni"));
  });

  it("cleanup removes entry, kubeconfig and binary, and stops repairing", async () => {
    const e = env();
    writeFileSync(join(e.net, "10-k.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "k", plugins: [{ type: "ptp" }] }));
    const i = installer(e);
    await i.start();
    const report = await i.cleanup();
    expect(report.upgrade).toBe(false);
    expect(pluginTypes(join(e.net, "10-k.conflist"))).toEqual(["ptp"]);
    expect(existsSync(join(e.bin, "ambient-cni"))).toBe(false);
    expect(existsSync(join(e.run, "ambient-cni-kubeconfig"))).toBe(false);
    await new Promise((r) => setTimeout(r, 500));
    expect(existsSync(join(e.bin, "ambient-cni"))).toBe(false);
  });

  it("cleanup during an upgrade leaves the plugin in place", async () => {
    const e = env();
    writeFileSync(join(e.net, "10-k.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "k", plugins: [{ type: "ptp" }] }));
    const i = installer(e, { isUpgrade: async () => true });
    await i.start();
    expect(await i.cleanup()).toEqual({ upgrade: true, removed: [] });
    expect(pluginTypes(join(e.net, "10-k.conflist"))).toEqual(["ptp", "ambient-cni"]);
    expect(existsSync(join(e.bin, "ambient-cni"))).toBe(true);
    expect(existsSync(join(e.run, "ambient-cni-kubeconfig"))).toBe(true);
  });

  it("runs cluster-free without a kubeconfig", async () => {
    const e = env();
    writeFileSync(join(e.net, "10-k.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "k", plugins: [{ type: "ptp" }] }));
    const report = await installer(e, { kube: undefined }).start();
    expect(report.kubeconfig).toBe("none");
    const doc = JSON.parse(readFileSync(join(e.net, "10-k.conflist"), "utf8")) as { plugins: Record<string, unknown>[] };
    expect(doc.plugins[1]?.kubeconfig).toBeUndefined();
  });
});
