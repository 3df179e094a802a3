import { isIP } from "node:net";
import { ConfigError, parseDuration, type Env, type ZtunnelConfig } from "../config.js";

// istiod mode's configuration with the names Istio's ztunnel reads, so the Istio chart's env
// works unchanged. ISTIO_TOKEN_PATH is ours (Istio's ztunnel hard-codes the path) so tests and
// unusual mounts can move the token.

export const ISTIOD_ENV_NAMES = [
  "XDS_ADDRESS",
  "CA_ADDRESS",
  "XDS_ROOT_CA",
  "CA_ROOT_CA",
  "ALT_XDS_HOSTNAME",
  "ALT_CA_HOSTNAME",
  "ISTIO_TOKEN_PATH",
  "POD_NAME",
  "POD_NAMESPACE",
  "INSTANCE_IP",
  "SECRET_TTL",
] as const;

export const DEFAULT_XDS_ADDRESS = "https://istiod.istio-system.svc:15012";
export const DEFAULT_ROOT_CA = "/var/run/secrets/istio/root-cert.pem";
export const DEFAULT_TOKEN_PATH = "/var/run/secrets/tokens/istio-token";
/** What istiod's certificate carries when it is reached by IP (no name to verify). */
export const ISTIOD_SAN = "istiod.istio-system.svc";

export interface GrpcTarget {
  /** As configured, for logs and config_dump. */
  readonly url: string;
  /** host:port for grpc-js (IPv6 in brackets). */
  readonly target: string;
  /** The name istiod's certificate must carry. */
  readonly serverName: string;
  /** PEM file of the root istiod's certificate chains to ("SYSTEM" = the system store). */
  readonly rootCaPath: string;
  /** Extra metadata on every call (XDS_HEADER_* / CA_HEADER_*), lower-cased names. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface IstiodConfig {
  readonly xds: GrpcTarget;
  readonly ca: GrpcTarget;
  readonly clusterId: string;
  readonly tokenPath: string;
  /** ISTIO_META_* without the prefix: node metadata. */
  readonly meta: Readonly<Record<string, string>>;
  readonly podName: string;
  readonly podNamespace: string;
  readonly instanceIp: string;
  readonly nodeName: string | undefined;
  readonly trustDomain: string;
  /** Requested certificate lifetime. */
  readonly secretTtlMs: number;
}

/** Reads istiod mode's settings; throws ConfigError naming the variable. */
export function loadIstiodConfig(env: Env, base: Pick<ZtunnelConfig, "clusterId" | "nodeName" | "trustDomain">): IstiodConfig {
  const get = (name: (typeof ISTIOD_ENV_NAMES)[number]): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const xdsUrl = get("XDS_ADDRESS") ?? DEFAULT_XDS_ADDRESS;
  const caUrl = get("CA_ADDRESS") ?? xdsUrl;
  const xdsRoot = get("XDS_ROOT_CA") ?? DEFAULT_ROOT_CA;
  const caRoot = get("CA_ROOT_CA") ?? xdsRoot;
  const required = (name: "POD_NAME" | "POD_NAMESPACE" | "INSTANCE_IP"): string => {
    const v = get(name);
    if (v === undefined) throw new ConfigError(name, "is required with istiod (it forms the xDS node id); set it from the downward API");
    return v;
  };
  const instanceIp = required("INSTANCE_IP");
  if (isIP(instanceIp) === 0) throw new ConfigError("INSTANCE_IP", `"${instanceIp}" is not an IP address`);
  const rawTtl = get("SECRET_TTL");
  const secretTtlMs = rawTtl === undefined ? 24 * 3_600_000 : parseDuration(rawTtl);
  if (secretTtlMs === undefined || secretTtlMs < 1_000) {
    throw new ConfigError("SECRET_TTL", `"${rawTtl ?? ""}" is not a duration of at least 1s (examples: 24h, 12h, 90m)`);
  }
  return Object.freeze({
    xds: target("XDS_ADDRESS", xdsUrl, xdsRoot, get("ALT_XDS_HOSTNAME"), prefixed(env, "XDS_HEADER_")),
    ca: target(get("CA_ADDRESS") === undefined ? "XDS_ADDRESS" : "CA_ADDRESS", caUrl, caRoot, get("ALT_CA_HOSTNAME"), prefixed(env, "CA_HEADER_")),
    clusterId: base.clusterId,
    tokenPath: get("ISTIO_TOKEN_PATH") ?? DEFAULT_TOKEN_PATH,
    meta: Object.freeze(prefixed(env, "ISTIO_META_", false)),
    podName: required("POD_NAME"),
    podNamespace: required("POD_NAMESPACE"),
    instanceIp,
    nodeName: base.nodeName,
    trustDomain: base.trustDomain,
    secretTtlMs,
  });
}

/** `ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`, as istiod expects from a ztunnel. */
export function nodeId(c: Pick<IstiodConfig, "instanceIp" | "podName" | "podNamespace">): string {
  return `ztunnel~${c.instanceIp}~${c.podName}.${c.podNamespace}~${c.podNamespace}.svc.cluster.local`;
}

function target(variable: string, url: string, rootCaPath: string, alt: string | undefined, headers: Record<string, string>): GrpcTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(variable, `"${url}" is not a URL (example: ${DEFAULT_XDS_ADDRESS})`);
  }
  // Plaintext would hand the token and every workload's identity to the network: refused.
  if (u.protocol !== "https:") throw new ConfigError(variable, `"${url}" must use https:// (istiod is reached over TLS only)`);
  if (u.pathname !== "/" && u.pathname !== "") throw new ConfigError(variable, `"${url}" must not have a path`);
  const port = u.port === "" ? 443 : Number(u.port);
  const host = u.hostname;
  const bare = host.startsWith("[") ? host.slice(1, -1) : host;
  return Object.freeze({
    url,
    target: `${host}:${port}`,
    serverName: alt ?? (isIP(bare) !== 0 ? ISTIOD_SAN : bare),
    rootCaPath,
    headers: Object.freeze(headers),
  });
}

function prefixed(env: Env, prefix: string, lower = true): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith(prefix) || v === undefined || k.length === prefix.length) continue;
    const name = k.slice(prefix.length);
    if (lower && !/^[A-Za-z0-9_-]+$/.test(name)) throw new ConfigError(k, "is not a valid header name (letters, digits, '_', '-')");
    out[lower ? name.toLowerCase() : name] = v;
  }
  return out;
}
