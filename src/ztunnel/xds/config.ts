import { isIP } from "node:net";
import { readEnv } from "../../shared/config/env.js";
import { ConfigError, type Env, type ZtunnelConfig } from "../config.js";
import { DEFAULT_XDS_ADDRESS, ISTIOD_ENV } from "./env.js";

// istiod mode's settings, from the variables in ISTIOD_ENV (the one schema) and the prefixed
// families Istio's ztunnel reads: ISTIO_META_* (node metadata), XDS_HEADER_* / CA_HEADER_*
// (extra call metadata).

export { DEFAULT_ROOT_CA, DEFAULT_TOKEN_PATH, DEFAULT_XDS_ADDRESS } from "./env.js";
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
  const v = readEnv(ISTIOD_ENV, env, (name, message) => new ConfigError(name, message));
  const required = (name: "POD_NAME" | "POD_NAMESPACE" | "INSTANCE_IP"): string => {
    const value = v[name];
    if (value === undefined) throw new ConfigError(name, "is required with istiod (it forms the xDS node id); set it from the downward API");
    return value;
  };
  const xdsUrl = v.XDS_ADDRESS ?? DEFAULT_XDS_ADDRESS;
  return Object.freeze({
    xds: target(xdsUrl, v.XDS_ROOT_CA, v.ALT_XDS_HOSTNAME, prefixed(env, "XDS_HEADER_")),
    ca: target(v.CA_ADDRESS ?? xdsUrl, v.CA_ROOT_CA ?? v.XDS_ROOT_CA, v.ALT_CA_HOSTNAME, prefixed(env, "CA_HEADER_")),
    clusterId: base.clusterId,
    tokenPath: v.ISTIO_TOKEN_PATH,
    meta: Object.freeze(prefixed(env, "ISTIO_META_", false)),
    podName: required("POD_NAME"),
    podNamespace: required("POD_NAMESPACE"),
    instanceIp: required("INSTANCE_IP"),
    nodeName: base.nodeName,
    trustDomain: base.trustDomain,
    secretTtlMs: v.SECRET_TTL,
  });
}

/** `ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`, as istiod expects from a ztunnel. */
export function nodeId(c: Pick<IstiodConfig, "instanceIp" | "podName" | "podNamespace">): string {
  return `ztunnel~${c.instanceIp}~${c.podName}.${c.podNamespace}~${c.podNamespace}.svc.cluster.local`;
}

function target(url: string, rootCaPath: string, alt: string | undefined, headers: Record<string, string>): GrpcTarget {
  // Checked by ISTIOD_ENV's parser: an https URL without a path.
  const u = new URL(url);
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
