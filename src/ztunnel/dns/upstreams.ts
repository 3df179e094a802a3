import { readFile } from "node:fs/promises";
import { canonicalIp } from "../state/ip.js";
import { DnsConfigError } from "./errors.js";
import type { Upstream } from "./transport.js";

// Where forwarded queries go: DNS_UPSTREAMS when set, else the nameservers of ztunnel's own
// resolv.conf (Istio's ztunnel forwards to the node-level resolver configuration).

const DNS_PORT = 53;

/** "ip", "ip:port" or "[v6]:port", comma-separated. Throws Error with what is wrong. */
export function parseUpstreamList(raw: string): Upstream[] {
  const out: Upstream[] = [];
  for (const item of raw.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    out.push(parseUpstream(item));
  }
  if (out.length === 0) throw new Error("lists no upstream resolver");
  return out;
}

function parseUpstream(s: string): Upstream {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  const v4 = /^([0-9.]+)(?::(\d+))?$/.exec(s);
  const m = bracketed ?? v4;
  const host = m === null ? s : (m[1] ?? "");
  // A scoped IPv6 address (fe80::1%eth0) names an interface of ztunnel's netns, not the pod's.
  const address = host.includes("%") ? undefined : canonicalIp(host);
  if (address === undefined) throw new Error(`"${s}" is not ip[:port] or [ipv6]:port`);
  const port = m?.[2] === undefined ? DNS_PORT : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`"${s}": port out of range 1..65535`);
  return { address, port };
}

/** The `nameserver` lines of a resolv.conf text (IP literals only, as the resolver requires). */
export function nameservers(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m === null) continue;
    // A scoped IPv6 address (fe80::1%eth0) cannot be reached from a pod's netns.
    const raw = m[1] ?? "";
    const address = raw.includes("%") ? undefined : canonicalIp(raw);
    if (address !== undefined) out.push({ address, port: DNS_PORT });
  }
  return out;
}

export async function resolvConfUpstreams(path: string): Promise<Upstream[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new DnsConfigError(`cannot read ${path} for the DNS proxy's upstream resolvers (set DNS_UPSTREAMS, or DNS_PROXY=false): ${(err as Error).message}`, { cause: err });
  }
  const list = nameservers(text);
  if (list.length === 0) throw new DnsConfigError(`${path} has no usable nameserver line; set DNS_UPSTREAMS (ip[:port],...) or DNS_PROXY=false`);
  return list;
}
