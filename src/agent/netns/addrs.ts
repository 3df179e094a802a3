import { isIP } from "node:net";
import type { CommandRunner } from "../redirect/index.js";

// The pod's own addresses as the kernel has them: used to prove a netns found by a /proc scan
// is the pod's, and for pods whose source lists no IPs (the ipset needs them).

interface IpAddrJson {
  ifname?: string;
  addr_info?: { local?: string; scope?: string }[];
}

/** Parses `ip -j addr show`: global-scope addresses of every interface but lo. */
export function parseGlobalAddrs(json: string): string[] {
  let links: unknown;
  try {
    links = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(links)) return [];
  const out: string[] = [];
  for (const l of links as IpAddrJson[]) {
    if (l.ifname === "lo") continue;
    for (const a of l.addr_info ?? []) {
      if (a.scope === "global" && typeof a.local === "string" && isIP(a.local) !== 0) out.push(a.local);
    }
  }
  return out;
}

export async function addrsInNetns(runner: CommandRunner): Promise<string[]> {
  const res = await runner.run("ip", ["-j", "addr", "show"]);
  if (res.code !== 0) return [];
  return parseGlobalAddrs(res.stdout);
}
