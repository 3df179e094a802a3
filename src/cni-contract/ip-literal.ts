// IP literal checks with exactly node:net's isIPv4/isIPv6 answers (test/unit/cni-ip-literal.test.ts
// compares them on generated strings), without node:net: the CNI plugin is a process per pod
// start, and loading node:net and its stream modules was a tenth of its CPU per ADD.

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const DEC_OCTET = /^(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])$/;
// Zone id after '%' (fe80::1%eth0): node accepts letters, digits, '-', '.' and ':'.
const ZONE = /^[0-9a-zA-Z.:-]+$/;

/** Dotted quad, four decimal octets 0-255 without leading zeros. */
export function isIPv4(s: string): boolean {
  const parts = s.split(".");
  return parts.length === 4 && parts.every((p) => DEC_OCTET.test(p));
}

/** Explicit 16-bit groups in `groups` (a trailing dotted quad counts two), or -1 when one is malformed. */
function groupCount(groups: readonly string[], quadAllowedLast: boolean): number {
  let n = 0;
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    if (HEX_GROUP.test(g)) n += 1;
    else if (quadAllowedLast && i === groups.length - 1 && isIPv4(g)) n += 2;
    else return -1;
  }
  return n;
}

/** RFC 4291 text form: eight groups, or fewer around one '::'; an optional trailing dotted quad and zone id. */
export function isIPv6(s: string): boolean {
  let addr = s;
  const pct = s.indexOf("%");
  if (pct >= 0) {
    if (!ZONE.test(s.slice(pct + 1))) return false;
    addr = s.slice(0, pct);
  }
  const gap = addr.indexOf("::");
  if (gap < 0) return groupCount(addr.split(":"), true) === 8;
  const left = addr.slice(0, gap);
  const right = addr.slice(gap + 2);
  if (right.includes("::")) return false;
  const l = left === "" ? 0 : groupCount(left.split(":"), false);
  const r = right === "" ? 0 : groupCount(right.split(":"), true);
  // '::' stands for at least one zero group.
  return l >= 0 && r >= 0 && l + r <= 7;
}
