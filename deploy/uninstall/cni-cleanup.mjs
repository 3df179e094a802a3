#!/usr/bin/env node
// Node-side uninstall: removes what the node agent deliberately leaves behind when it stops
// (a stopped agent keeps the plugin chained so no ambient pod ever starts unprotected):
//   1. our entry in the host's CNI conflist, the plugin executable, the plugin's kubeconfig,
//      the agent's sockets and its persisted netns map (the installer's own cleanup);
//   2. the node-side probe SNAT: the ISTIO_POSTRT chain, its POSTROUTING jump and the
//      istio-inpod-probes ipsets, for both iptables backends.
// Run by cni-cleanup-daemonset.yaml from the same image, AFTER the istio-cni-node DaemonSet is
// gone (a running agent would repair the conflist at once). Paths come from the agent's own
// variables, with the agent's defaults. Prints one JSON line with what it removed.
import { spawnSync } from "node:child_process";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { CniInstaller } from "../../dist/src/agent/install/installer.js";
import { PLUGIN_KUBECONFIG_NAME } from "../../dist/src/agent/install/kubeconfig.js";
import { HOST_CHAIN, PROBE_SET_V4, PROBE_SET_V6 } from "../../dist/src/agent/hostrules/probe-snat.js";
import { NETNS_MAP_FILE } from "../../dist/src/agent/netns/store.js";
import { PLUGIN_EVENT_SOCKET, PLUGIN_LOG_SOCKET } from "../../dist/src/cni-contract/wire.js";

const env = (name, dflt) => process.env[name]?.trim() || dflt;
const runDir = env("CNI_AGENT_RUN_DIR", "/var/run/istio-cni");
const confName = process.env.CNI_CONF_NAME?.trim();

const installer = new CniInstaller({
  pluginBinary: "/nonexistent", // never copied: cleanup only
  binDir: env("MOUNTED_CNI_BIN_DIR", "/host/opt/cni/bin"),
  netDir: env("MOUNTED_CNI_NET_DIR", "/host/etc/cni/net.d"),
  ...(confName ? { confName } : {}),
  runDir,
  isUpgrade: () => false,
});
const { removed } = await installer.cleanup();
for (const name of [PLUGIN_KUBECONFIG_NAME, PLUGIN_EVENT_SOCKET, PLUGIN_LOG_SOCKET, join("state", NETNS_MAP_FILE)]) {
  await rm(join(runDir, name), { force: true });
  removed.push(join(runDir, name));
}

// Host rules: every step may find nothing to do (other backend, IPv6 off, already clean).
const hostRules = [];
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return r.status === 0;
};
for (const ipt of ["iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft"]) {
  let jumps = 0;
  while (jumps < 100 && run(ipt, ["-w", "-t", "nat", "-D", "POSTROUTING", "-j", HOST_CHAIN])) jumps++;
  const flushed = run(ipt, ["-w", "-t", "nat", "-F", HOST_CHAIN]);
  const deleted = run(ipt, ["-w", "-t", "nat", "-X", HOST_CHAIN]);
  if (jumps > 0 || flushed || deleted) hostRules.push(`${ipt} nat ${HOST_CHAIN}`);
}
for (const set of [PROBE_SET_V4, PROBE_SET_V6]) if (run("ipset", ["destroy", set])) hostRules.push(`ipset ${set}`);

process.stdout.write(JSON.stringify({ msg: "ambient node cleanup done", removed, hostRules }) + "\n");
