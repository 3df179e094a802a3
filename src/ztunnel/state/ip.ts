import { isIP } from "node:net";

// One canonical spelling per address, so lookups by IP never miss on "::1" vs "0:0::1" or on
// the IPv4-mapped form ("::ffff:10.0.0.1") that dual-stack sockets report.

const MAPPED_PREFIX = "::ffff:";

export function canonicalIp(ip: string): string | undefined {
  const family = isIP(ip);
  if (family === 4) return ip;
  if (family !== 6) return undefined;
  // A dual-stack listener reports every IPv4 peer as "::ffff:a.b.c.d": once or more per
  // connection, so it skips the URL parser below.
  if (ip.length > MAPPED_PREFIX.length && ip.slice(0, MAPPED_PREFIX.length).toLowerCase() === MAPPED_PREFIX) {
    const v4 = ip.slice(MAPPED_PREFIX.length);
    if (isIP(v4) === 4) return v4;
  }
  // The URL parser serialises IPv6 in RFC 5952 form.
  const host = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (mapped !== null) {
    const hi = Number.parseInt(mapped[1] ?? "0", 16);
    const lo = Number.parseInt(mapped[2] ?? "0", 16);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return host;
}

/** "ip:port" with IPv6 in brackets (the HBONE :authority form). */
export function formatHostPort(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Parses "ip:port" / "[v6]:port"; undefined unless the host is a literal IP and the port valid. */
export function parseHostPort(s: string): { ip: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([0-9.]+):(\d{1,5})$/.exec(s);
  if (m === null) return undefined;
  const ip = canonicalIp(m[1] ?? "");
  const port = Number(m[2]);
  if (ip === undefined || (isIP(m[1] ?? "") === 6 && !s.startsWith("["))) return undefined;
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { ip, port };
}
