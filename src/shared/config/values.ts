import { isIP } from "node:net";
import { isAbsolute, resolve } from "node:path";

// How every configuration value is written, for both binaries: one parser per kind, so a
// duration, an address, a path or a boolean is accepted by the agent exactly when ztunnel
// accepts it. A parser throws ValueError with what is wrong; the caller adds the variable name.

/** A value that does not parse; the message says what is accepted. */
export class ValueError extends Error {}

export type Parser<T> = (raw: string) => T;

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["0", "false", "no", "off"]);

export function bool(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (TRUE.has(v)) return true;
  if (FALSE.has(v)) return false;
  throw new ValueError(`"${raw}" is not a boolean (use true or false)`);
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
 * durations, in whole milliseconds; "0" alone is zero. Undefined when malformed: a bare number
 * has no unit and is refused rather than guessed.
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

/** A duration in milliseconds, at least `minMs`. */
export function duration(minMs = 0): Parser<number> {
  return (raw) => {
    const ms = parseDuration(raw);
    if (ms === undefined) throw new ValueError(`"${raw}" is not a duration (a number with a unit: 500ms, 10s, 5m, 1h30m; or 0)`);
    if (ms < minMs) throw new ValueError(`${raw} is below the minimum of ${minMs}ms`);
    return ms;
  };
}

/** A decimal (or 0x hex, as marks are written) integer in [min, max]. */
export function integer(min: number, max: number): Parser<number> {
  return (raw) => {
    const v = raw.trim();
    const n = /^0x[0-9a-f]+$/i.test(v) ? Number.parseInt(v.slice(2), 16) : /^\d+$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n)) throw new ValueError(`"${raw}" is not an integer`);
    if (n < min || n > max) throw new ValueError(`${n} is out of range [${min}, ${max}]`);
    return n;
  };
}

/** A filesystem path; a relative one is resolved against the working directory at start. */
export function path(raw: string): string {
  if (raw.includes("\0")) throw new ValueError("contains a NUL byte");
  return isAbsolute(raw) ? raw : resolve(raw);
}

/**
 * A listen address: "host:port", "[v6]:port", ":port" (every interface, as Go reads it) or a
 * bare "port" (keeps `defaultHost`). The host must be an IP address or "localhost": a listener
 * must not depend on name resolution at start.
 */
export function address(defaultHost: string): Parser<HostPort> {
  return (raw) => {
    const v = raw.trim();
    if (/^\d+$/.test(v)) return { host: defaultHost, port: port(v) };
    const m = /^\[([^\]]+)\]:(\d+)$/.exec(v) ?? /^([^:[\]]*):(\d+)$/.exec(v);
    if (m === null) throw new ValueError(`"${raw}" is not an address (host:port, [ipv6]:port, :port or port)`);
    const host = m[1] ?? "";
    if (host !== "" && host !== "localhost" && isIP(host) === 0) throw new ValueError(`"${host}" is not an IP address (or localhost)`);
    return { host: host === "" ? "0.0.0.0" : host, port: port(m[2] ?? "") };
  };
}

function port(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ValueError(`port ${raw} is out of range 0..65535`);
  return n;
}

/** An http(s) URL. */
export function httpUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ValueError(`"${raw}" is not a URL; use e.g. http://127.0.0.1:15000`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new ValueError(`"${raw}" must be an http(s) URL`);
  return raw;
}

/** A name such as a cluster or node name: letters, digits, '.', '_', '-'. */
export function name(raw: string): string {
  if (!/^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/.test(raw)) {
    throw new ValueError(`"${raw}" is not a valid name (letters, digits, '.', '_', '-')`);
  }
  return raw;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** A comma-separated list of Kubernetes namespace names (DNS labels). */
export function namespaceList(raw: string): string[] {
  const list = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const ns of list) {
    if (!DNS_LABEL.test(ns) || ns.length > 63) throw new ValueError(`holds "${ns}", which is not a namespace name (comma-separated DNS labels)`);
  }
  return list;
}

/** One Kubernetes namespace name. */
export function namespace(raw: string): string {
  const list = namespaceList(raw);
  if (list.length !== 1) throw new ValueError(`"${raw}" is not one namespace name`);
  return list[0] ?? raw;
}

/** Any non-empty string, as given. */
export function text(raw: string): string {
  return raw;
}

/** One of a fixed set of words. */
export function oneOf<const W extends string>(words: readonly W[]): Parser<W> {
  return (raw) => {
    const v = raw.trim();
    if (!(words as readonly string[]).includes(v)) throw new ValueError(`"${raw}" is not one of ${words.join(", ")}`);
    return v as W;
  };
}
