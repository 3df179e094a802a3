import * as c from "../shared/config/values.js";
import { parseDuration, type HostPort } from "../shared/config/values.js";
import { checkNames, helpText, optional, readEnv, rejectMisspelled, variable, type Env, type EnvFamily } from "../shared/config/env.js";
import { AmbientError } from "../shared/errors.js";
import { DEFAULT_CONFIRM_TIMEOUT_MS } from "./cluster/identity-gate.js";
import { ISTIOD_ENV } from "./xds/env.js";
import type { Upstream } from "./dns/transport.js";
import { parseUpstreamList } from "./dns/upstreams.js";
import type { PlaintextRelayKind } from "./proxy/plain-relay.js";

// ztunnel's configuration, read once from the environment with the variable names Istio's
// ztunnel uses, so a deployment can swap this implementation in. Values parse as the agent's do
// (one parser, src/shared/config). Every value is validated here; the rest of the program
// receives a fully defaulted, frozen object.

export class ConfigError extends AmbientError {
  readonly variable: string;

  constructor(variable: string, message: string) {
    super("ZTUNNEL_CONFIG", `${variable}: ${message}`);
    this.variable = variable;
  }
}

export interface ZtunnelConfig {
  /** Unix socket (SEQPACKET) the node agent serves ZDS on. */
  readonly inpodUds: string;
  /** Local config file (workloads, services, policies); undefined = none. */
  readonly localXdsPath: string | undefined;
  /** SO_MARK on every socket ztunnel creates in a pod netns. */
  readonly packetMark: number;
  /** SO_REUSEPORT on in-pod listeners (several workers share each port). */
  readonly inpodPortReuse: boolean;
  readonly ipv6Enabled: boolean;
  readonly workerThreads: number;
  readonly clusterId: string;
  readonly nodeName: string | undefined;
  readonly poolMaxStreamsPerConnection: number;
  readonly poolUnusedReleaseTimeoutMs: number;
  /** How long SIGTERM lets open connections finish before closing them. */
  readonly connectionTerminationDeadlineMs: number;
  readonly caRootDir: string | undefined;
  /** Generate a root into caRootDir when none is there (explicit opt-in only). */
  readonly caRootGenerate: boolean;
  readonly trustDomain: string;
  readonly adminAddr: HostPort;
  readonly statsAddr: HostPort;
  readonly readinessAddr: HostPort;
  /** The DNS proxy on 15053 in every enrolled pod. */
  readonly dnsProxy: boolean;
  /** Upstream resolvers; undefined: the nameservers of dnsResolvConf. */
  readonly dnsUpstreams: readonly Upstream[] | undefined;
  readonly dnsResolvConf: string;
  readonly dnsUpstreamTimeoutMs: number;
  /** DNS queries per second per pod and worker; 0 = no limit. */
  readonly dnsPodQueryRate: number;
  readonly clusterDomain: string;
  /** How passthrough and inbound plaintext (15006) copy bytes: in the kernel, or in JS. */
  readonly plaintextRelay: PlaintextRelayKind;
}

export type { Env, HostPort };
export { parseDuration };

const fail = (variable: string, message: string): ConfigError => new ConfigError(variable, message);

/** Every variable of ztunnel's own configuration, with its default; `ztunnel --help` prints it. */
export const ZTUNNEL_ENV = {
  INPOD_UDS: variable("unix socket (SEQPACKET) the node agent serves ZDS on", c.path, "/var/run/ztunnel/ztunnel.sock"),
  LOCAL_XDS_PATH: optional("local config file (workloads, services, policies)", c.path),
  PACKET_MARK: variable("SO_MARK on every socket ztunnel creates in a pod netns", c.integer(1, 0xffffffff), 1337, "1337 (0x539)"),
  INPOD_PORT_REUSE: variable("SO_REUSEPORT on in-pod listeners (several workers share each port)", c.bool, true),
  IPV6_ENABLED: variable("serve IPv6 as well", c.bool, true),
  ZTUNNEL_WORKER_THREADS: variable("proxy worker threads", c.integer(1, 256), 2),
  CLUSTER_ID: variable("this cluster's id (telemetry, identity checks)", c.name, "Kubernetes"),
  NODE_NAME: optional("this node; required in Kubernetes mode", c.name),
  POOL_MAX_STREAMS_PER_CONNECTION: variable("HBONE streams per pooled connection", c.integer(1, 2 ** 31 - 1), 100),
  POOL_UNUSED_RELEASE_TIMEOUT: variable("idle time before a pooled HBONE connection closes", c.duration(), 300_000, "5m"),
  CONNECTION_TERMINATION_DEADLINE: variable("how long SIGTERM lets open connections finish", c.duration(), 5_000, "5s"),
  CA_ROOT_DIR: optional("directory with root-cert.pem and ca-key.pem (the mesh root); required unless istiod signs (istiod mode)", c.path),
  CA_ROOT_GENERATE: variable("generate a root into CA_ROOT_DIR when none is there (explicit opt-in)", c.bool, false),
  TRUST_DOMAIN: variable("SPIFFE trust domain", trustDomain, "cluster.local"),
  ADMIN_ADDR: variable("admin endpoint", c.address("127.0.0.1"), { host: "127.0.0.1", port: 15000 }),
  STATS_ADDR: variable("Prometheus metrics endpoint", c.address("0.0.0.0"), { host: "0.0.0.0", port: 15020 }),
  READINESS_ADDR: variable("readiness endpoint (/healthz/ready)", c.address("0.0.0.0"), { host: "0.0.0.0", port: 15021 }),
  // The mesh source's variables (cluster/select.ts reads them; listed and checked here too).
  KUBECONFIG: optional("Kubernetes mode through this kubeconfig (the first file of a list)", c.text),
  KUBERNETES_SERVICE_HOST: optional("in-cluster API server (set by Kubernetes)", c.text),
  KUBERNETES_SERVICE_PORT: optional("in-cluster API server port (set by Kubernetes)", c.integer(1, 65535)),
  IDENTITY_CONFIRM_TIMEOUT: variable("how long an Add waits for Kubernetes to confirm the pod", c.duration(), DEFAULT_CONFIRM_TIMEOUT_MS),
  CLUSTER_DOMAIN: variable("cluster DNS domain", c.text, "cluster.local"),
  NETWORK: variable("this node's network name", c.text, "", "none"),
  // istiod mode's (xds/config.ts reads them).
  ...ISTIOD_ENV,
  DNS_PROXY: variable("serve DNS on 15053 in every enrolled pod (the agent's DNS capture sends queries there)", c.bool, true),
  DNS_UPSTREAMS: optional("resolvers for names outside the mesh (ip[:port], comma-separated); unset: DNS_RESOLV_CONF's nameservers", upstreamList),
  DNS_RESOLV_CONF: variable("resolv.conf whose nameservers are the default DNS upstreams", c.path, "/etc/resolv.conf"),
  DNS_UPSTREAM_TIMEOUT: variable("a forwarded DNS query's deadline, retries included (SERVFAIL after it)", c.duration(100), 5_000, "5s"),
  ZTUNNEL_PLAINTEXT_RELAY: variable(
    "how passthrough and inbound plaintext (15006) copy bytes: splice (in the kernel, JS when the pod's fd share has no room for its pipes) or js",
    c.oneOf(["splice", "js"]),
    // A spliced connection holds 6 fds (its 2 sockets, a pipe per direction); the pod's fd budget
    // counts them (proxy/budget.ts SPLICE_EXTRA_FDS), so the kernel relay is the default.
    "splice",
  ),
  DNS_POD_QUERY_RATE: variable("DNS queries per second one pod may send per worker thread, twice that as a burst (0: no limit)", c.integer(0, 1_000_000), 5_000),
} as const;

export const ENV_NAMES = Object.keys(ZTUNNEL_ENV) as readonly (keyof typeof ZTUNNEL_ENV)[];

/** Read outside this table (the mesh source's variables, logging, debug), and our prefixes. */
export const ZTUNNEL_ENV_FAMILY: EnvFamily = {
  prefixes: ["ZTUNNEL_", "INPOD_", "POOL_", "CA_ROOT_"],
  alsoRead: ["LOG_LEVEL", "ZTUNNEL_DEBUG_ENDPOINTS", "AMBIENT_NATIVE_ADDON"],
};

export function ztunnelHelp(): string {
  return helpText("ztunnel: the ambient node proxy.", ZTUNNEL_ENV, ZTUNNEL_ENV_FAMILY);
}

/** Names that look like ztunnel's but nothing reads (to warn about at start). */
export function unknownVariables(env: Env = process.env): readonly string[] {
  return checkNames(ZTUNNEL_ENV, ZTUNNEL_ENV_FAMILY, env).unknown;
}

/** Reads and validates the whole configuration; throws ConfigError naming the variable. */
export function loadConfig(env: Env = process.env): ZtunnelConfig {
  rejectMisspelled(checkNames(ZTUNNEL_ENV, ZTUNNEL_ENV_FAMILY, env), fail);
  const v = readEnv(ZTUNNEL_ENV, env, fail);
  if (v.CA_ROOT_GENERATE && v.CA_ROOT_DIR === undefined) {
    throw new ConfigError("CA_ROOT_GENERATE", "is true but CA_ROOT_DIR is not set (where should the root go?)");
  }
  return Object.freeze({
    inpodUds: v.INPOD_UDS,
    localXdsPath: v.LOCAL_XDS_PATH,
    packetMark: v.PACKET_MARK,
    inpodPortReuse: v.INPOD_PORT_REUSE,
    ipv6Enabled: v.IPV6_ENABLED,
    workerThreads: v.ZTUNNEL_WORKER_THREADS,
    clusterId: v.CLUSTER_ID,
    nodeName: v.NODE_NAME,
    poolMaxStreamsPerConnection: v.POOL_MAX_STREAMS_PER_CONNECTION,
    poolUnusedReleaseTimeoutMs: v.POOL_UNUSED_RELEASE_TIMEOUT,
    connectionTerminationDeadlineMs: v.CONNECTION_TERMINATION_DEADLINE,
    caRootDir: v.CA_ROOT_DIR,
    caRootGenerate: v.CA_ROOT_GENERATE,
    trustDomain: v.TRUST_DOMAIN,
    adminAddr: Object.freeze({ ...v.ADMIN_ADDR }),
    statsAddr: Object.freeze({ ...v.STATS_ADDR }),
    readinessAddr: Object.freeze({ ...v.READINESS_ADDR }),
    dnsProxy: v.DNS_PROXY,
    dnsUpstreams: v.DNS_UPSTREAMS,
    dnsResolvConf: v.DNS_RESOLV_CONF,
    dnsUpstreamTimeoutMs: v.DNS_UPSTREAM_TIMEOUT,
    dnsPodQueryRate: v.DNS_POD_QUERY_RATE,
    clusterDomain: v.CLUSTER_DOMAIN,
    plaintextRelay: v.ZTUNNEL_PLAINTEXT_RELAY,
  });
}

function upstreamList(raw: string): Upstream[] {
  try {
    return parseUpstreamList(raw);
  } catch (err) {
    throw new c.ValueError((err as Error).message);
  }
}

function trustDomain(raw: string): string {
  // SPIFFE trust domain: lowercase letters, digits, '.', '-', '_'.
  if (!/^[a-z0-9._-]+$/.test(raw)) {
    throw new c.ValueError(`"${raw}" is not a valid SPIFFE trust domain (lowercase letters, digits, '.', '-', '_')`);
  }
  return raw;
}
