import type { ZtunnelConfig } from "../config.js";
import type { Upstream } from "./transport.js";
import { resolvConfUpstreams } from "./upstreams.js";

// What a worker needs to run the DNS proxy of its pods; built once on the main thread from the
// configuration and posted to workers with their settings (plain data).

export const DNS_PORT = 15053;

export interface DnsSettings {
  readonly clusterDomain: string;
  readonly upstreams: readonly Upstream[];
  /** A forwarded query's whole budget; SERVFAIL after it. */
  readonly upstreamDeadlineMs: number;
  /** One UDP attempt to one upstream. */
  readonly upstreamAttemptMs: number;
  /** Queries per second per pod and worker (token bucket; 0 = no limit), and the burst. */
  readonly queriesPerSecond: number;
  readonly burst: number;
  /** Upstream queries in flight per pod and worker. */
  readonly maxUpstreamInFlight: number;
  /** TCP client connections per pod and worker. */
  readonly maxTcpConnections: number;
  /** An idle TCP client connection is closed after this. */
  readonly tcpIdleMs: number;
}

export const DEFAULT_DNS_LIMITS = {
  upstreamAttemptMs: 1_000,
  maxUpstreamInFlight: 256,
  maxTcpConnections: 256,
  tcpIdleMs: 10_000,
} as const;

/** The workers' DNS settings from ztunnel's configuration; undefined when DNS_PROXY is off. */
export async function dnsSettingsFrom(config: ZtunnelConfig): Promise<DnsSettings | undefined> {
  if (!config.dnsProxy) return undefined;
  const upstreams = config.dnsUpstreams ?? (await resolvConfUpstreams(config.dnsResolvConf));
  return {
    clusterDomain: config.clusterDomain,
    upstreams,
    upstreamDeadlineMs: config.dnsUpstreamTimeoutMs,
    ...DEFAULT_DNS_LIMITS,
    upstreamAttemptMs: Math.min(DEFAULT_DNS_LIMITS.upstreamAttemptMs, config.dnsUpstreamTimeoutMs),
    queriesPerSecond: config.dnsPodQueryRate,
    burst: config.dnsPodQueryRate * 2,
  };
}
