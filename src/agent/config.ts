import { join } from "node:path";
import * as c from "../shared/config/values.js";
import { checkNames, helpText, optional, readEnv, rejectMisspelled, variable, type Env, type EnvFamily } from "../shared/config/env.js";
import { DEFAULT_SELECTORS, parseEnablementSelectors, SelectorError, type EnablementSelector } from "../cni-contract/index.js";
import { AgentConfigError } from "./errors.js";

// The agent's configuration, read once from the environment. Names follow istio-cni where it
// has one (ZTUNNEL_UDS_ADDRESS, CNI_AGENT_RUN_DIR, ...) so a DaemonSet written for Istio's agent
// needs few changes; `cni-agent --help` lists them all. Values parse as ztunnel's do (one parser,
// src/shared/config). A malformed value is an error naming the variable, never a silent default.

export interface AgentConfig {
  /** ZTUNNEL_UDS_ADDRESS: the ZDS socket ztunnel connects to. */
  zdsSocket: string;
  /** CNI_AGENT_RUN_DIR: pluginevent.sock, the plugin kubeconfig and our netns map live here. */
  runDir: string;
  /** MOUNTED_CNI_NET_DIR: the host's CNI config dir (mounted). */
  cniNetDir: string;
  /** MOUNTED_CNI_BIN_DIR: where the plugin executable is installed. */
  cniBinDir: string;
  /** CNI_CONF_NAME: chain into this conflist instead of the first one. */
  cniConfName: string | undefined;
  /** CNI_INSTALL (ours): false = do not install/chain the plugin (it is managed elsewhere). */
  cniInstall: boolean;
  /** AMBIENT_CNI_PLUGIN_BINARY (ours): the built plugin executable to copy. */
  pluginBinary: string;
  /** NODE_NAME: required in Kubernetes mode (the pod informer's field selector). */
  nodeName: string;
  /** POD_NAMESPACE: the agent's own namespace; its pods are never enrolled. */
  podNamespace: string;
  /** EXCLUDE_NAMESPACES: comma separated. */
  excludeNamespaces: string[];
  /** AMBIENT_DNS_CAPTURE: redirect DNS to ztunnel's 15053 (default on, as in Istio ≥ 1.25). */
  dnsCapture: boolean;
  /** AMBIENT_IPV6: also program ip6tables in pods and the IPv6 probe ipset. */
  ipv6: boolean;
  /** KUBECONFIG: empty = in-cluster service account (unless LOCAL_INVENTORY_PATH is set). */
  kubeconfig: string | undefined;
  /** LOCAL_INVENTORY_PATH (ours): cluster-free mode, enrollment from this YAML file. */
  inventoryPath: string | undefined;
  /** VERIFY_INTERVAL (ours): period of the rules/ztunnel verifier; 0 disables it. */
  verifyIntervalMs: number;
  /** VERIFY_PROXIES (ours): the verifier also checks ztunnel's listeners in each pod netns (ss). */
  verifyProxies: boolean;
  /** AGENT_HTTP_ADDRESS (ours): host:port of /healthz, /readyz and /metrics (port 0 = any). */
  httpHost: string;
  httpPort: number;
  /** ZDS_ACK_TIMEOUT (ours): deadline of each ZDS write + Ack. */
  zdsAckTimeoutMs: number;
  /** RECONCILE_MAX_BACKOFF (ours): cap of the retry queue's exponential backoff. */
  retryMaxBackoffMs: number;
  /** HOST_PROBE_SNAT (ours): program the node-side SNAT of kubelet probes. */
  hostProbeSnat: boolean;
  /** PROC_ROOT (ours, tests): where to scan for pod processes. */
  procRoot: string;
  /** AMBIENT_ENABLEMENT_SELECTORS (ours): which pods enroll; the installer writes the same list into the plugin config. */
  enablementSelectors: EnablementSelector[];
}

export type { Env };

function selectorList(raw: string): EnablementSelector[] {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (err) {
    throw new c.ValueError(`is not JSON: ${(err as Error).message}`);
  }
  try {
    return parseEnablementSelectors(v, "the list");
  } catch (err) {
    if (err instanceof SelectorError) throw new c.ValueError(err.message);
    throw err;
  }
}

/** The default plugin executable: the build output next to this package. */
export function defaultPluginBinary(): string {
  return join(import.meta.dirname, "..", "..", "..", "dist", "cni-plugin", "ambient-cni");
}

const fail = (variable: string, message: string): AgentConfigError => new AgentConfigError(`${variable}: ${message}`, variable);

/** Every variable the agent reads, with its default; `cni-agent --help` prints this. */
export const AGENT_ENV = {
  ZTUNNEL_UDS_ADDRESS: variable("the ZDS socket ztunnel connects to", c.path, "/var/run/ztunnel/ztunnel.sock"),
  CNI_AGENT_RUN_DIR: variable("pluginevent.sock, the plugin kubeconfig and the netns map live here", c.path, "/var/run/istio-cni"),
  MOUNTED_CNI_NET_DIR: variable("the host's CNI config dir (mounted)", c.path, "/host/etc/cni/net.d"),
  MOUNTED_CNI_BIN_DIR: variable("where the plugin executable is installed (mounted)", c.path, "/host/opt/cni/bin"),
  CNI_CONF_NAME: optional("chain into this conflist (a file name in MOUNTED_CNI_NET_DIR) instead of the first one", c.text, "the first conflist"),
  CNI_INSTALL: variable("false = do not install or chain the plugin (it is managed elsewhere)", c.bool, true),
  AMBIENT_CNI_PLUGIN_BINARY: variable("the built plugin executable to copy", c.path, defaultPluginBinary(), "dist/cni-plugin/ambient-cni of this package"),
  NODE_NAME: variable("this node (the pod informer's field selector); required unless LOCAL_INVENTORY_PATH is set", c.name, ""),
  POD_NAMESPACE: variable("the agent's own namespace; its pods are never enrolled", c.namespace, "istio-system"),
  EXCLUDE_NAMESPACES: variable("namespaces never enrolled (comma separated)", c.namespaceList, ["kube-system"]),
  AMBIENT_DNS_CAPTURE: variable("redirect pod DNS to ztunnel's 15053 (a pod opts out with annotation ambient.istio.io/dns-capture: \"false\")", c.bool, true),
  AMBIENT_IPV6: variable("also program ip6tables in pods and the IPv6 probe ipset", c.bool, true),
  KUBECONFIG: optional("kubeconfig of the API server", c.path, "in-cluster service account"),
  LOCAL_INVENTORY_PATH: optional("cluster-free mode: enrollment from this YAML file", c.path),
  VERIFY_INTERVAL: variable("period of the rules/ztunnel verifier; 0 disables it", c.duration(), 5000, "5s"),
  VERIFY_PROXIES: variable("the verifier also checks, in each pod netns, that ztunnel's listeners (15001/15006/15008, 15053 with DNS capture) are there and marked", c.bool, true),
  AGENT_HTTP_ADDRESS: variable("listen address of /healthz, /readyz and /metrics (port 0 = any)", c.address("0.0.0.0"), { host: "0.0.0.0", port: 8000 }),
  ZDS_ACK_TIMEOUT: variable("deadline of each ZDS write + Ack", c.duration(1), 5000, "5s"),
  RECONCILE_MAX_BACKOFF: variable("cap of the retry queue's exponential backoff", c.duration(1), 30_000, "30s"),
  HOST_PROBE_SNAT: variable("program the node-side SNAT of kubelet probes", c.bool, true),
  PROC_ROOT: variable("where to scan for pod processes (tests)", c.path, "/proc"),
  AMBIENT_ENABLEMENT_SELECTORS: variable(
    "which pods enroll: a JSON list of {podSelector, namespaceSelector} label selectors (the plugin gets the same list)",
    selectorList,
    DEFAULT_SELECTORS as EnablementSelector[],
    "Istio's: pod or namespace label istio.io/dataplane-mode=ambient, pod label =none opts out",
  ),
} as const;

/** Variables read outside this table, and the prefixes that mark a name as the agent's. */
export const AGENT_ENV_FAMILY: EnvFamily = {
  prefixes: ["AMBIENT_", "CNI_AGENT_", "ZTUNNEL_", "MOUNTED_CNI_"],
  alsoRead: ["LOG_LEVEL", "AMBIENT_NATIVE_ADDON", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"],
};

/** Names for the deployment checks (every variable the agent reads). */
export const AGENT_ENV_NAMES = Object.keys(AGENT_ENV);

export function agentHelp(): string {
  return helpText("cni-agent: the ambient node agent (istio-cni equivalent).", AGENT_ENV, AGENT_ENV_FAMILY);
}

/** Names that look like the agent's but nothing reads (to warn about at start). */
export function agentUnknownVariables(env: Env = process.env): readonly string[] {
  return checkNames(AGENT_ENV, AGENT_ENV_FAMILY, env).unknown;
}

/** Reads and validates the agent's configuration; throws AgentConfigError naming the variable. */
export function loadAgentConfig(env: Env = process.env): AgentConfig {
  rejectMisspelled(checkNames(AGENT_ENV, AGENT_ENV_FAMILY, env), fail);
  const v = readEnv(AGENT_ENV, env, fail);
  if (v.LOCAL_INVENTORY_PATH === undefined && v.NODE_NAME === "") {
    throw new AgentConfigError("NODE_NAME is required in Kubernetes mode (set it from spec.nodeName), or set LOCAL_INVENTORY_PATH for a cluster-free node", "NODE_NAME");
  }
  if (v.CNI_CONF_NAME !== undefined && /[/\\]/.test(v.CNI_CONF_NAME)) {
    throw fail("CNI_CONF_NAME", `"${v.CNI_CONF_NAME}" must be a file name inside MOUNTED_CNI_NET_DIR, not a path`);
  }
  return {
    zdsSocket: v.ZTUNNEL_UDS_ADDRESS,
    runDir: v.CNI_AGENT_RUN_DIR,
    cniNetDir: v.MOUNTED_CNI_NET_DIR,
    cniBinDir: v.MOUNTED_CNI_BIN_DIR,
    cniConfName: v.CNI_CONF_NAME,
    cniInstall: v.CNI_INSTALL,
    pluginBinary: v.AMBIENT_CNI_PLUGIN_BINARY,
    nodeName: v.NODE_NAME,
    podNamespace: v.POD_NAMESPACE,
    excludeNamespaces: [...v.EXCLUDE_NAMESPACES],
    dnsCapture: v.AMBIENT_DNS_CAPTURE,
    ipv6: v.AMBIENT_IPV6,
    kubeconfig: v.KUBECONFIG,
    inventoryPath: v.LOCAL_INVENTORY_PATH,
    verifyIntervalMs: v.VERIFY_INTERVAL,
    verifyProxies: v.VERIFY_PROXIES,
    httpHost: v.AGENT_HTTP_ADDRESS.host,
    httpPort: v.AGENT_HTTP_ADDRESS.port,
    zdsAckTimeoutMs: v.ZDS_ACK_TIMEOUT,
    retryMaxBackoffMs: v.RECONCILE_MAX_BACKOFF,
    hostProbeSnat: v.HOST_PROBE_SNAT,
    procRoot: v.PROC_ROOT,
    enablementSelectors: v.AMBIENT_ENABLEMENT_SELECTORS.map((s) => structuredClone(s)),
  };
}
