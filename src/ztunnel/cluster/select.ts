import { existsSync } from "node:fs";
import { isIPv6 } from "node:net";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import type { Registry } from "prom-client";
import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import type { NetnsHandle } from "../../native/index.js";
import type { WorkloadProxyManager } from "../../zds/index.js";
import { parseDuration, type Env, type ZtunnelConfig } from "../config.js";
import { FileStateSource } from "../state/file-source.js";
import { DEFAULT_TOKEN_PATH, DEFAULT_XDS_ADDRESS } from "../xds/env.js";
import type { StateSource } from "../state/source.js";
import type { CertIssuer } from "../tls/cert-manager.js";
import { SourceSelectionError } from "./errors.js";
import { GatedIssuer, gateManager } from "./gated.js";
import { DEFAULT_CONFIRM_TIMEOUT_MS, IdentityGate } from "./identity-gate.js";

// Where workload state (and the right to sign) comes from, decided once at start-up:
// LOCAL_XDS_PATH set → the local file; else istiod (XDS_ADDRESS set, or the istio-ca projected
// token mounted: Istio's chart does both) for xDS and certificates; otherwise the Kubernetes API, through KUBECONFIG when
// set, else in-cluster credentials (KUBERNETES_SERVICE_HOST/PORT + the service account token).
// Nothing usable → an error that lists what to set. The choice and its reason are logged.
// The Kubernetes client (and our informers) are loaded only in Kubernetes mode: the client's
// module graph costs tens of MiB, which a node on a local file must not pay.

/** Our own variables (the rest of ztunnel's configuration is in config.ts). */
export const CLUSTER_ENV_NAMES = ["KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "IDENTITY_CONFIRM_TIMEOUT", "CLUSTER_DOMAIN", "NETWORK"] as const;

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export type MeshMode = "file" | "kubernetes" | "istiod";

export interface MeshSource {
  readonly mode: MeshMode;
  /** Why this source was chosen, for the start-up log and /config_dump. */
  readonly reason: string;
  readonly source: StateSource;
  /**
   * The certificate issuer: the local CA (wrapped in Kubernetes mode so it signs only
   * identities of pods on this node), or istiod's CA (then `ca` is undefined: no local root).
   */
  issuer(ca: CertIssuer | undefined): CertIssuer;
  /** Wraps the ZDS workload manager: in Kubernetes mode an Add waits for Kubernetes to confirm the pod. */
  gate(manager: WorkloadProxyManager<NetnsHandle>): WorkloadProxyManager<NetnsHandle>;
  /** Readiness items (informers restarting, pods waiting for confirmation); empty when fine. */
  notReady(): string[];
  /** Source-specific state for /config_dump (istiod: the xDS connection, ignored fields). */
  dump?(): Record<string, unknown>;
  /** Source metrics (istiod: istio_xds_*, istio_build) into the process registry. */
  registerMetrics?(registry: Registry): void;
  close(): Promise<void>;
}

export interface SelectOptions {
  readonly log?: Logger;
  /** Prefix of the in-cluster service account paths (tests); default "". */
  readonly inClusterPathPrefix?: string;
  /** Passed to the Kubernetes source (tests shorten timings). */
  readonly kube?: { readonly syncTimeoutMs?: number; readonly restartBaseMs?: number; readonly debounceMs?: number };
  /** Passed to istiod mode (tests shorten timings). */
  readonly istiod?: { readonly syncWaitMs?: number; readonly backoff?: { readonly baseMs: number; readonly maxMs: number } };
}

/**
 * Why istiod mode applies, or undefined: no LOCAL_XDS_PATH, and XDS_ADDRESS set or the projected
 * istio-ca token present. main.ts asks first (istiod mode needs no local CA root).
 */
export function istiodReason(config: ZtunnelConfig, env: Env = process.env): string | undefined {
  if (config.localXdsPath !== undefined) return undefined;
  const address = env.XDS_ADDRESS?.trim();
  if (address !== undefined && address !== "") return `no LOCAL_XDS_PATH; XDS_ADDRESS=${address}`;
  const tokenPath = env.ISTIO_TOKEN_PATH?.trim() || DEFAULT_TOKEN_PATH;
  if (existsSync(tokenPath)) return `no LOCAL_XDS_PATH; istiod token ${tokenPath} is mounted (XDS_ADDRESS defaults to ${DEFAULT_XDS_ADDRESS})`;
  return undefined;
}

export async function selectMeshSource(config: ZtunnelConfig, env: Env = process.env, opts: SelectOptions = {}): Promise<MeshSource> {
  const log = opts.log ?? logger("ztunnel.source");
  const get = (name: (typeof CLUSTER_ENV_NAMES)[number]): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const kubeconfig = get("KUBECONFIG");
  const host = get("KUBERNETES_SERVICE_HOST");
  const tokenPath = `${opts.inClusterPathPrefix ?? ""}${join(SERVICE_ACCOUNT_DIR, "token")}`;

  if (config.localXdsPath !== undefined) {
    const ignored = kubeconfig !== undefined || host !== undefined ? " (Kubernetes credentials are present but not used)" : "";
    const reason = `LOCAL_XDS_PATH is set${ignored}`;
    log.info({ mode: "file", path: config.localXdsPath, reason }, "workload state from the local config file");
    return fileMode(new FileStateSource(config.localXdsPath), reason);
  }

  const istiod = istiodReason(config, env);
  if (istiod !== undefined) {
    const { loadIstiodConfig } = await import("../xds/config.js");
    const { istiodMode } = await import("../xds/istiod-mode.js");
    const ic = loadIstiodConfig(env, config);
    const mode = istiodMode(ic, { log, ...(opts.istiod ?? {}) });
    log.info(
      { mode: "istiod", xds: ic.xds.url, ca: ic.ca.url, clusterId: ic.clusterId, tokenPath: ic.tokenPath, reason: istiod },
      "workload state and certificates from istiod",
    );
    return {
      mode: "istiod",
      reason: istiod,
      source: mode.source,
      issuer: () => mode.issuer,
      gate: (manager) => mode.gate(manager),
      notReady: () => mode.notReady(),
      dump: () => mode.dump(),
      registerMetrics: (r) => mode.registerMetrics(r),
      close: () => mode.close(),
    };
  }

  if (kubeconfig === undefined && host === undefined) throw noSourceError();

  const [{ KubeConfig }, { KubeStateSource }] = await Promise.all([import("@kubernetes/client-node"), import("./kube-source.js")]);
  let kc: KubeConfig;
  let reason: string;
  if (kubeconfig !== undefined) {
    // A KUBECONFIG list (a:b) is not merged: the first file is used.
    const path = kubeconfig.split(":")[0] ?? kubeconfig;
    kc = new KubeConfig();
    try {
      kc.loadFromFile(path);
    } catch (err) {
      throw new SourceSelectionError(`KUBECONFIG=${kubeconfig}: cannot load ${path}: ${errorMessage(err)}`, { cause: err });
    }
    if (kc.getCurrentCluster() === null) throw new SourceSelectionError(`KUBECONFIG=${kubeconfig}: ${path} names no current cluster (set current-context)`);
    reason = `no LOCAL_XDS_PATH; KUBECONFIG=${path}`;
  } else if (host !== undefined) {
    if (get("KUBERNETES_SERVICE_PORT") === undefined) {
      throw new SourceSelectionError("KUBERNETES_SERVICE_HOST is set but KUBERNETES_SERVICE_PORT is not; both come from the pod environment in a cluster");
    }
    if (!existsSync(tokenPath)) {
      throw new SourceSelectionError(
        `no LOCAL_XDS_PATH, and KUBERNETES_SERVICE_HOST is set but there is no service account token at ${tokenPath}: ` +
          "mount one (automountServiceAccountToken: true), set KUBECONFIG, or set LOCAL_XDS_PATH to a local config file",
      );
    }
    kc = inClusterConfig(new KubeConfig(), host, get("KUBERNETES_SERVICE_PORT") ?? "443", opts.inClusterPathPrefix ?? "");
    reason = "no LOCAL_XDS_PATH; in-cluster service account (KUBERNETES_SERVICE_HOST)";
  } else {
    throw noSourceError();
  }

  if (config.nodeName === undefined) {
    throw new SourceSelectionError(
      `NODE_NAME is required in Kubernetes mode (${reason}): ztunnel issues certificates only for pods Kubernetes places on this node; ` +
        "set it from the downward API (fieldRef: spec.nodeName)",
    );
  }
  const rawTimeout = get("IDENTITY_CONFIRM_TIMEOUT");
  const timeoutMs = rawTimeout === undefined ? DEFAULT_CONFIRM_TIMEOUT_MS : parseDuration(rawTimeout);
  if (timeoutMs === undefined) {
    throw new SourceSelectionError(`IDENTITY_CONFIRM_TIMEOUT: "${rawTimeout ?? ""}" is not a duration (examples: 500ms, 10s, 1m)`);
  }
  const clusterDomain = get("CLUSTER_DOMAIN") ?? "cluster.local";
  const source = new KubeStateSource({
    kubeConfig: kc,
    trustDomain: config.trustDomain,
    clusterDomain,
    network: get("NETWORK") ?? "",
    ...(opts.kube ?? {}),
  });
  const nodeName = config.nodeName;
  const gate = new IdentityGate({ pods: source, nodeName, trustDomain: config.trustDomain, timeoutMs });
  log.info(
    { mode: "kubernetes", server: kc.getCurrentCluster()?.server, node: nodeName, reason, confirmTimeoutMs: timeoutMs },
    "workload state from the Kubernetes API; certificates only for pods Kubernetes confirms on this node",
  );
  return {
    mode: "kubernetes",
    reason,
    source,
    issuer: (ca) => new GatedIssuer(requireLocalCa(ca), gate, nodeName),
    gate: (manager) => gateManager(manager, gate),
    notReady: () => [...source.problems(), ...gate.pending().map((uid) => `pod ${uid} waiting for Kubernetes to confirm it on node ${nodeName}`)],
    close: async () => {
      gate.close();
      await source.close();
    },
  };
}

function requireLocalCa(ca: CertIssuer | undefined): CertIssuer {
  if (ca === undefined) throw new SourceSelectionError("this mode signs with the local CA, and none was loaded (CA_ROOT_DIR)");
  return ca;
}

function noSourceError(): SourceSelectionError {
  return new SourceSelectionError(
    "no workload state source: LOCAL_XDS_PATH is not set, no XDS_ADDRESS or istiod token, and no Kubernetes credentials were found " +
      "(no KUBECONFIG, no KUBERNETES_SERVICE_HOST with a service account token); " +
      "set LOCAL_XDS_PATH to a local config file, or run ztunnel in a cluster, or set KUBECONFIG",
  );
}

// As client-node's loadFromCluster, but from `env` rather than process.env. The token file is
// re-read by client-node as it rotates. `kc` is a fresh KubeConfig (the class is loaded lazily).
function inClusterConfig(kc: KubeConfig, host: string, port: string, prefix: string): KubeConfig {
  const scheme = port === "80" || port === "8080" || port === "8001" ? "http" : "https";
  const server = `${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`;
  kc.loadFromOptions({
    clusters: [{ name: "inCluster", server, caFile: `${prefix}${join(SERVICE_ACCOUNT_DIR, "ca.crt")}`, skipTLSVerify: false }],
    users: [{ name: "inClusterUser", authProvider: { name: "tokenFile", config: { tokenFile: `${prefix}${join(SERVICE_ACCOUNT_DIR, "token")}` } } }],
    contexts: [{ name: "inClusterContext", cluster: "inCluster", user: "inClusterUser" }],
    currentContext: "inClusterContext",
  });
  return kc;
}

function fileMode(source: StateSource, reason: string): MeshSource {
  return {
    mode: "file",
    reason,
    source,
    issuer: (ca) => requireLocalCa(ca),
    gate: (manager) => manager,
    notReady: () => [],
    close: () => source.close(),
  };
}
