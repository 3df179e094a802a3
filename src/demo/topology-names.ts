import { createHash } from "node:crypto";

// Names and addresses of one topology, derived from its run id: every netns and link name
// carries the id (≤ 15 characters), every address range is chosen by hashing it.

export const MAX_IFNAME = 15;
export const MAX_NODES = 99;
export const MAX_PODS_PER_NODE = 250;

export interface Addressing {
  /** Second octet of pod CIDRs (10.<x>.<node>.0/24) and third octet of node IPs (192.168.<x>.<n>). */
  x: number;
  /** ULA /48-ish base such as "fd3a:91c2:" used for every IPv6 address of this topology. */
  v6: string;
}

export function addressingFor(id: string): Addressing {
  const h = createHash("sha256").update(id).digest();
  const x = (h[0]! % 250) + 1;
  const v6 = `fd${h[1]!.toString(16).padStart(2, "0")}:${h.readUInt16BE(2).toString(16)}:${h.readUInt16BE(4).toString(16)}:`;
  return { x, v6 };
}

/** Canonical (RFC 5952) text of an IPv6 address, as the kernel and `ip` print it. */
export function v6(addr: string): string {
  return new URL(`http://[${addr}]/`).hostname.slice(1, -1);
}

export function checkName(name: string): string {
  if (name.length > MAX_IFNAME) {
    throw new Error(`topology name "${name}" is longer than ${MAX_IFNAME} characters; use a shorter id`);
  }
  return name;
}
