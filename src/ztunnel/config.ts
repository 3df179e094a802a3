import { isIP } from "node:net";
import { isAbsolute, resolve } from "node:path";
import { AmbientError } from "../shared/errors.js";

// ztunnel's configuration, read once from the environment with the variable names Istio's
// ztunnel uses, so a deployment can swap this implementation in. Every value is validated
// here; the rest of the program receives a fully defaulted, frozen object.

export class ConfigError extends AmbientError {
  readonly variable: string;

  constructor(variable: string, message: string) {
    super("ZTUNNEL_CONFIG", `${variable}: ${message}`);
    this.variable = variable;
  }
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
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
}

export type Env = Readonly<Record<string, string | undefined>>;

export const ENV_NAMES = [
  "INPOD_UDS",
  "LOCAL_XDS_PATH",
  "PACKET_MARK",
  "INPOD_PORT_REUSE",
  "IPV6_ENABLED",
  "ZTUNNEL_WORKER_THREADS",
  "CLUSTER_ID",
  "NODE_NAME",
  "POOL_MAX_STREAMS_PER_CONNECTION",
  "POOL_UNUSED_RELEASE_TIMEOUT",
  "CONNECTION_TERMINATION_DEADLINE",
  "CA_ROOT_DIR",
  "CA_ROOT_GENERATE",
  "TRUST_DOMAIN",
  "ADMIN_ADDR",
  "STATS_ADDR",
  "READINESS_ADDR",
] as const;

/** Reads and validates the whole configuration; throws ConfigError naming the variable. */
export function loadConfig(env: Env = process.env): ZtunnelConfig {
  const get = (name: (typeof ENV_NAMES)[number]): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };

  const caRootGenerate = parseBool("CA_ROOT_GENERATE", get("CA_ROOT_GENERATE"), false);
  const caRootDir = optionalPath("CA_ROOT_DIR", get("CA_ROOT_DIR"));
  if (caRootGenerate && caRootDir === undefined) {
    throw new ConfigError("CA_ROOT_GENERATE", "is true but CA_ROOT_DIR is not set (where should the root go?)");
  }

  const cfg: ZtunnelConfig = {
    inpodUds: optionalPath("INPOD_UDS", get("INPOD_UDS")) ?? "/var/run/ztunnel/ztunnel.sock",
    localXdsPath: optionalPath("LOCAL_XDS_PATH", get("LOCAL_XDS_PATH")),
    packetMark: parseInteger("PACKET_MARK", get("PACKET_MARK"), 1337, 1, 0xffffffff),
    inpodPortReuse: parseBool("INPOD_PORT_REUSE", get("INPOD_PORT_REUSE"), true),
    ipv6Enabled: parseBool("IPV6_ENABLED", get("IPV6_ENABLED"), true),
    workerThreads: parseInteger("ZTUNNEL_WORKER_THREADS", get("ZTUNNEL_WORKER_THREADS"), 2, 1, 256),
    clusterId: parseName("CLUSTER_ID", get("CLUSTER_ID")) ?? "Kubernetes",
    nodeName: parseName("NODE_NAME", get("NODE_NAME")),
    poolMaxStreamsPerConnection: parseInteger(
      "POOL_MAX_STREAMS_PER_CONNECTION",
      get("POOL_MAX_STREAMS_PER_CONNECTION"),
      100,
      1,
      2 ** 31 - 1,
    ),
    poolUnusedReleaseTimeoutMs: parseDurationVar("POOL_UNUSED_RELEASE_TIMEOUT", get("POOL_UNUSED_RELEASE_TIMEOUT"), 300_000),
    connectionTerminationDeadlineMs: parseDurationVar(
      "CONNECTION_TERMINATION_DEADLINE",
      get("CONNECTION_TERMINATION_DEADLINE"),
      5_000,
    ),
    caRootDir,
    caRootGenerate,
    trustDomain: parseTrustDomain(get("TRUST_DOMAIN")),
    adminAddr: parseHostPort("ADMIN_ADDR", get("ADMIN_ADDR"), { host: "127.0.0.1", port: 15000 }),
    statsAddr: parseHostPort("STATS_ADDR", get("STATS_ADDR"), { host: "0.0.0.0", port: 15020 }),
    readinessAddr: parseHostPort("READINESS_ADDR", get("READINESS_ADDR"), { host: "0.0.0.0", port: 15021 }),
  };
  return Object.freeze({
    ...cfg,
    adminAddr: Object.freeze(cfg.adminAddr),
    statsAddr: Object.freeze(cfg.statsAddr),
    readinessAddr: Object.freeze(cfg.readinessAddr),
  });
}

function parseBool(name: string, raw: string | undefined, dflt: boolean): boolean {
  if (raw === undefined) return dflt;
  switch (raw.toLowerCase()) {
    case "true":
    case "1":
    case "yes":
    case "on":
      return true;
    case "false":
    case "0":
    case "no":
    case "off":
      return false;
    default:
      throw new ConfigError(name, `"${raw}" is not a boolean (use true or false)`);
  }
}

function parseInteger(name: string, raw: string | undefined, dflt: number, min: number, max: number): number {
  if (raw === undefined) return dflt;
  // Hex is accepted because marks are usually written as 0x539.
  const n = /^0x[0-9a-f]+$/i.test(raw) ? Number.parseInt(raw.slice(2), 16) : /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n)) throw new ConfigError(name, `"${raw}" is not an integer`);
  if (n < min || n > max) throw new ConfigError(name, `${n} is out of range [${min}, ${max}]`);
  return n;
}

function optionalPath(name: string, raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (raw.includes("\0")) throw new ConfigError(name, "contains a NUL byte");
  return isAbsolute(raw) ? raw : resolve(raw);
}

function parseName(name: string, raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (!/^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/.test(raw)) {
    throw new ConfigError(name, `"${raw}" is not a valid name (letters, digits, '.', '_', '-')`);
  }
  return raw;
}

function parseTrustDomain(raw: string | undefined): string {
  if (raw === undefined) return "cluster.local";
  // SPIFFE trust domain: lowercase letters, digits, '.', '-', '_'.
  if (!/^[a-z0-9._-]+$/.test(raw)) {
    throw new ConfigError("TRUST_DOMAIN", `"${raw}" is not a valid SPIFFE trust domain (lowercase letters, digits, '.', '-', '_')`);
  }
  return raw;
}

function parseDurationVar(name: string, raw: string | undefined, dfltMs: number): number {
  if (raw === undefined) return dfltMs;
  const ms = parseDuration(raw);
  if (ms === undefined) {
    throw new ConfigError(name, `"${raw}" is not a duration (examples: 500ms, 300s, 5m, 1h30m)`);
  }
  return ms;
}

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  sec: 1000,
  secs: 1000,
  m: 60_000,
  min: 60_000,
  mins: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hrs: 3_600_000,
  d: 86_400_000,
};

/**
 * Go (`time.ParseDuration`: "300s", "1h30m", "1.5h") and Rust humantime ("5min", "1h 30m")
 * durations, in whole milliseconds. Undefined when malformed.
 */
export function parseDuration(raw: string): number | undefined {
  const s = raw.trim();
  if (s === "0") return 0;
  const re = /(\d+(?:\.\d+)?)\s*([a-zµ]+)\s*/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    const unit = UNIT_MS[m[2] ?? ""];
    if (unit === undefined) return undefined;
    total += Number(m[1]) * unit;
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== s.length) return undefined;
  const ms = Math.round(total);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

function parseHostPort(name: string, raw: string | undefined, dflt: HostPort): HostPort {
  if (raw === undefined) return dflt;
  // Accept "host:port", "[v6]:port" or a bare port (keeps the default host).
  if (/^\d+$/.test(raw)) return { host: dflt.host, port: portOf(name, raw) };
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(raw) ?? /^([^:[\]]+):(\d+)$/.exec(raw);
  if (m === null) throw new ConfigError(name, `"${raw}" is not an address (host:port or [ipv6]:port)`);
  const host = m[1] ?? "";
  if (host !== "localhost" && isIP(host) === 0) throw new ConfigError(name, `"${host}" is not an IP address`);
  return { host, port: portOf(name, m[2] ?? "") };
}

function portOf(name: string, raw: string): number {
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(name, `port ${raw} is out of range`);
  return port;
}
