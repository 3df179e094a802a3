import { isIP } from "node:net";

// IPs and CIDRs as 32-bit words, so a containment test is four AND/compare operations with no
// string work. IPv4-mapped IPv6 (::ffff:a.b.c.d) is treated as the IPv4 address it carries,
// the same way the state canonicalises addresses.

export interface IpWords {
  readonly v6: boolean;
  /** IPv4: w3 holds the address, w0..w2 are 0. */
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
}

export interface Cidr extends IpWords {
  readonly prefix: number;
  readonly m0: number;
  readonly m1: number;
  readonly m2: number;
  readonly m3: number;
  /** As written in the policy, for messages and dumps. */
  readonly text: string;
}

/** Parses an IP literal; undefined if it is not one. */
export function parseIp(s: string): IpWords | undefined {
  const v4 = fastV4(s);
  if (v4 >= 0) return { v6: false, w0: 0, w1: 0, w2: 0, w3: v4 };
  const family = isIP(s);
  if (family === 4) return { v6: false, w0: 0, w1: 0, w2: 0, w3: v4Word(s) };
  if (family !== 6) return undefined;
  const w = v6Words(s);
  if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) return { v6: false, w0: 0, w1: 0, w2: 0, w3: w[3] ?? 0 };
  return { v6: true, w0: w[0] ?? 0, w1: w[1] ?? 0, w2: w[2] ?? 0, w3: w[3] ?? 0 };
}

/** Parses "ip" (a host route) or "ip/len"; a string describing the problem on failure. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf("/");
  const addr = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(addr);
  if (ip === undefined) return `"${addr}" is not an IP address`;
  const written6 = isIP(addr) === 6;
  const max = written6 ? 128 : 32;
  let prefix = max;
  if (slash >= 0) {
    const len = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(len) || Number(len) > max) return `prefix length "${len}" is not 0-${max}`;
    prefix = Number(len);
  }
  let v6 = ip.v6;
  if (written6 && !v6) {
    // An IPv4-mapped range: only meaningful as an IPv4 range (addresses are canonicalised).
    if (prefix < 96) return `"${text}" spans beyond the IPv4-mapped range ::ffff:0:0/96; write an IPv4 CIDR instead`;
    prefix -= 96;
    v6 = false;
  }
  const m = masks(v6 ? prefix : prefix + 96);
  return {
    v6,
    prefix,
    w0: (ip.w0 & m[0]) >>> 0,
    w1: (ip.w1 & m[1]) >>> 0,
    w2: (ip.w2 & m[2]) >>> 0,
    w3: (ip.w3 & m[3]) >>> 0,
    m0: m[0],
    m1: m[1],
    m2: m[2],
    m3: m[3],
    text,
  };
}

export function cidrContains(c: Cidr, ip: IpWords): boolean {
  return (
    c.v6 === ip.v6 &&
    ((ip.w3 & c.m3) >>> 0) === c.w3 &&
    ((ip.w2 & c.m2) >>> 0) === c.w2 &&
    ((ip.w1 & c.m1) >>> 0) === c.w1 &&
    ((ip.w0 & c.m0) >>> 0) === c.w0
  );
}

function masks(prefix128: number): [number, number, number, number] {
  const out: [number, number, number, number] = [0, 0, 0, 0];
  for (let i = 0; i < 4; i++) {
    const bits = Math.max(0, Math.min(32, prefix128 - i * 32));
    out[i] = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  }
  return out;
}

/** Dotted-quad without leading zeros (what sockets report) → word; -1 for anything else. */
function fastV4(s: string): number {
  let w = 0;
  let part = -1;
  let dots = 0;
  let digits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (part < 0 || dots === 3) return -1;
      w = w * 256 + part;
      part = -1;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      // A leading zero ("010") is left to the slow path, which rejects it like isIP does.
      if (digits > 0 && part === 0) return -1;
      part = part < 0 ? c - 48 : part * 10 + (c - 48);
      if (part > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || part < 0) return -1;
  return (w * 256 + part) >>> 0;
}

function v4Word(s: string): number {
  let w = 0;
  let part = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      w = (w * 256 + part) >>> 0;
      part = 0;
    } else {
      part = part * 10 + (c - 48);
    }
  }
  return (w * 256 + part) >>> 0;
}

// Only called on strings isIP() accepted, so the shape is known to be valid.
function v6Words(input: string): number[] {
  const pct = input.indexOf("%");
  const s = pct < 0 ? input : input.slice(0, pct);
  const groups: number[] = [];
  const parseSide = (side: string): number[] => {
    if (side === "") return [];
    const out: number[] = [];
    for (const g of side.split(":")) {
      if (g.includes(".")) {
        const v4 = v4Word(g);
        out.push(v4 >>> 16, v4 & 0xffff);
      } else {
        out.push(Number.parseInt(g, 16));
      }
    }
    return out;
  };
  const dbl = s.indexOf("::");
  if (dbl < 0) {
    groups.push(...parseSide(s));
  } else {
    const head = parseSide(s.slice(0, dbl));
    const tail = parseSide(s.slice(dbl + 2));
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  }
  const w: number[] = [];
  for (let i = 0; i < 8; i += 2) w.push((((groups[i] ?? 0) << 16) | (groups[i + 1] ?? 0)) >>> 0);
  return w;
}
