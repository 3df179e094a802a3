import { isIP } from "node:net";
import * as c from "../../shared/config/values.js";
import { optional, variable } from "../../shared/config/env.js";

// istiod mode's variables in the one configuration schema (src/shared/config), with the names
// Istio's ztunnel reads so the Istio chart's env works unchanged. ISTIO_TOKEN_PATH is ours
// (Istio's ztunnel hard-codes the path). ISTIO_META_*, XDS_HEADER_* and CA_HEADER_* are
// families, read by prefix in xds/config.ts.

export const DEFAULT_XDS_ADDRESS = "https://istiod.istio-system.svc:15012";
export const DEFAULT_ROOT_CA = "/var/run/secrets/istio/root-cert.pem";
export const DEFAULT_TOKEN_PATH = "/var/run/secrets/tokens/istio-token";

export const ISTIOD_ENV = {
  XDS_ADDRESS: optional(`istiod's xDS address; setting it selects istiod mode (default ${DEFAULT_XDS_ADDRESS} when the istiod token is mounted)`, istiodUrl),
  CA_ADDRESS: optional("istiod's CA address (default: XDS_ADDRESS)", istiodUrl),
  XDS_ROOT_CA: variable("root certificate istiod's xDS certificate chains to (SYSTEM = the system store)", rootPath, DEFAULT_ROOT_CA),
  CA_ROOT_CA: optional("root certificate of istiod's CA (default: XDS_ROOT_CA)", rootPath),
  ALT_XDS_HOSTNAME: optional("name to verify in istiod's xDS certificate instead of the address's host", c.text),
  ALT_CA_HOSTNAME: optional("name to verify in istiod's CA certificate instead of the address's host", c.text),
  ISTIO_TOKEN_PATH: variable("projected service account token (audience istio-ca) sent to istiod", c.path, DEFAULT_TOKEN_PATH),
  POD_NAME: optional("this ztunnel's pod name (istiod node id); required with istiod", c.name),
  POD_NAMESPACE: optional("this ztunnel's namespace (istiod node id); required with istiod", c.name),
  INSTANCE_IP: optional("this ztunnel's pod IP (istiod node id); required with istiod", ip),
  SECRET_TTL: variable("lifetime asked of istiod's CA for workload certificates", c.duration(1_000), 86_400_000, "24h"),
} as const;

function istiodUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new c.ValueError(`"${raw}" is not a URL (example: ${DEFAULT_XDS_ADDRESS})`);
  }
  // Plaintext would hand the token and every workload's identity to the network: refused.
  if (u.protocol !== "https:") throw new c.ValueError(`"${raw}" must use https:// (istiod is reached over TLS only)`);
  if (u.pathname !== "/" && u.pathname !== "") throw new c.ValueError(`"${raw}" must not have a path`);
  return raw;
}

function rootPath(raw: string): string {
  return raw === "SYSTEM" ? raw : c.path(raw);
}

function ip(raw: string): string {
  if (isIP(raw) === 0) throw new c.ValueError(`"${raw}" is not an IP address`);
  return raw;
}
