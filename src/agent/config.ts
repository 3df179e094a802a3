import { isAbsolute, join } from "node:path";
import { AgentConfigError } from "./errors.js";

// The agent's configuration, read once from the environment. Names follow istio-cni where it
// has one (ZTUNNEL_UDS_ADDRESS, CNI_AGENT_RUN_DIR, ...) so a DaemonSet written for Istio's agent
// needs few changes; ours are listed in src/agent/README.md. A malformed value is an error
// naming the variable, never a silent default.

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
  /** AMBIENT_DNS_CAPTURE: redirect DNS to ztunnel's 15053 (off until ztunnel serves it). */
  dnsCapture: boolean;
  /** AMBIENT_IPV6: also program ip6tables in pods and the IPv6 probe ipset. */
  ipv6: boolean;
  /** KUBECONFIG: empty = in-cluster service account (unless LOCAL_INVENTORY_PATH is set). */
  kubeconfig: string | undefined;
  /** LOCAL_INVENTORY_PATH (ours): cluster-free mode, enrollment from this YAML file. */
  inventoryPath: string | undefined;
  /** VERIFY_INTERVAL (ours): period of the rules/ztunnel verifier; 0 disables it. */
  verifyIntervalMs: number;
  /** ZTUNNEL_ADMIN_URL (ours): ztunnel's admin base URL; lets the verifier ask which pods it serves. */
  ztunnelAdminUrl: string | undefined;
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
}

export type Env = Readonly<Record<string, string | undefined>>;

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go-style durations as Istio's flags take them: "500ms", "10s", "1m"; "0" alone is zero. */
export function parseDuration(name: string, raw: string): number {
  const v = raw.trim();
  if (v === "0") return 0;
  const m = DURATION.exec(v);
  if (!m) throw new AgentConfigError(`${name}="${raw}" is not a duration; use a number with a unit, e.g. 500ms, 10s, 1m (or 0)`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2]!]!);
}

export function parseBool(name: string, raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off"].includes(v)) return false;
  throw new AgentConfigError(`${name}="${raw}" is not a boolean; use true or false`);
}

function absPath(name: string, raw: string): string {
  if (!isAbsolute(raw)) throw new AgentConfigError(`${name}="${raw}" must be an absolute path`);
  return raw;
}

function hostPort(name: string, raw: string): { host: string; port: number } {
  const i = raw.lastIndexOf(":");
  const host = i < 0 ? "" : raw.slice(0, i).replace(/^\[(.*)\]$/, "$1");
  const portText = i < 0 ? raw : raw.slice(i + 1);
  const port = Number(portText);
  if (portText === "" || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new AgentConfigError(`${name}="${raw}" must be [host]:port with a port in 0..65535, e.g. :8000 or 127.0.0.1:8000`);
  }
  return { host: host === "" ? "0.0.0.0" : host, port };
}

function httpUrl(name: string, raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new AgentConfigError(`${name}="${raw}" is not a URL; use e.g. http://127.0.0.1:15000`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new AgentConfigError(`${name}="${raw}" must be an http(s) URL`);
  return raw;
}

function namespaces(name: string, raw: string): string[] {
  const list = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const ns of list) {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns) || ns.length > 63) {
      throw new AgentConfigError(`${name} holds "${ns}", which is not a namespace name (comma-separated DNS labels)`);
    }
  }
  return list;
}

/** The default plugin executable: the build output next to this package. */
export function defaultPluginBinary(): string {
  return join(import.meta.dirname, "..", "..", "..", "dist", "cni-plugin", "ambient-cni");
}

/** Reads and validates the agent's configuration; throws AgentConfigError naming the variable. */
export function loadAgentConfig(env: Env = process.env): AgentConfig {
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  const opt = <T>(name: string, parse: (name: string, raw: string) => T, dflt: T): T => {
    const v = get(name);
    return v === undefined ? dflt : parse(name, v);
  };
  const inventoryPath = opt("LOCAL_INVENTORY_PATH", absPath, undefined as string | undefined);
  const kubeconfig = opt("KUBECONFIG", absPath, undefined as string | undefined);
  const nodeName = get("NODE_NAME") ?? "";
  if (inventoryPath === undefined && nodeName === "") {
    throw new AgentConfigError("NODE_NAME is required in Kubernetes mode (set it from spec.nodeName), or set LOCAL_INVENTORY_PATH for a cluster-free node");
  }
  const http = opt("AGENT_HTTP_ADDRESS", hostPort, { host: "0.0.0.0", port: 8000 });
  const cfg: AgentConfig = {
    zdsSocket: opt("ZTUNNEL_UDS_ADDRESS", absPath, "/var/run/ztunnel/ztunnel.sock"),
    runDir: opt("CNI_AGENT_RUN_DIR", absPath, "/var/run/istio-cni"),
    cniNetDir: opt("MOUNTED_CNI_NET_DIR", absPath, "/host/etc/cni/net.d"),
    cniBinDir: opt("MOUNTED_CNI_BIN_DIR", absPath, "/host/opt/cni/bin"),
    cniConfName: get("CNI_CONF_NAME"),
    cniInstall: opt("CNI_INSTALL", parseBool, true),
    pluginBinary: opt("AMBIENT_CNI_PLUGIN_BINARY", absPath, defaultPluginBinary()),
    nodeName,
    podNamespace: opt("POD_NAMESPACE", (n, v) => namespaces(n, v)[0] ?? "istio-system", "istio-system"),
    excludeNamespaces: opt("EXCLUDE_NAMESPACES", namespaces, ["kube-system"]),
    dnsCapture: opt("AMBIENT_DNS_CAPTURE", parseBool, false),
    ipv6: opt("AMBIENT_IPV6", parseBool, true),
    kubeconfig,
    inventoryPath,
    verifyIntervalMs: opt("VERIFY_INTERVAL", parseDuration, 5000),
    ztunnelAdminUrl: opt("ZTUNNEL_ADMIN_URL", httpUrl, undefined as string | undefined),
    httpHost: http.host,
    httpPort: http.port,
    zdsAckTimeoutMs: opt("ZDS_ACK_TIMEOUT", parseDuration, 5000),
    retryMaxBackoffMs: opt("RECONCILE_MAX_BACKOFF", parseDuration, 30_000),
    hostProbeSnat: opt("HOST_PROBE_SNAT", parseBool, true),
    procRoot: opt("PROC_ROOT", absPath, "/proc"),
  };
  if (cfg.zdsAckTimeoutMs <= 0) throw new AgentConfigError(`ZDS_ACK_TIMEOUT must be above 0`);
  if (cfg.retryMaxBackoffMs <= 0) throw new AgentConfigError(`RECONCILE_MAX_BACKOFF must be above 0`);
  if (cfg.cniConfName !== undefined && /[/\\]/.test(cfg.cniConfName)) {
    throw new AgentConfigError(`CNI_CONF_NAME="${cfg.cniConfName}" must be a file name inside MOUNTED_CNI_NET_DIR, not a path`);
  }
  return cfg;
}
