import { isIP } from "node:net";
import { closest } from "../../shared/did-you-mean.js";
import { AmbientError } from "../../shared/errors.js";
import { canonicalIp } from "./ip.js";
import type { GatewayAddress, NetworkAddress } from "./types.js";

// Field readers for the local config file: each names the field path in its error, e.g.
// `workloads[2].workloadIps[0]: "10.0.0.x" is not an IP address`.

export class LocalConfigError extends AmbientError {
  readonly path: string;
  readonly detail: string;

  constructor(path: string, detail: string, source?: string) {
    super("LOCAL_CONFIG_INVALID", `${source !== undefined ? `${source}: ` : ""}${path}: ${detail}`);
    this.path = path;
    this.detail = detail;
  }
}

export const DEFAULT_NETWORK = "";
export type Obj = Record<string, unknown>;

export function object(v: unknown, at: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new LocalConfigError(at, `expected a mapping, got ${describe(v)}`);
  return v as Obj;
}

export function list(v: unknown, at: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new LocalConfigError(at, `expected a list, got ${describe(v)}`);
  return v;
}

export function str(v: unknown, at: string, allowEmpty = false): string {
  if (v === undefined) throw new LocalConfigError(at, "is required");
  if (typeof v !== "string") throw new LocalConfigError(at, `expected a string, got ${describe(v)}`);
  if (!allowEmpty && v.trim() === "") throw new LocalConfigError(at, "must not be empty");
  return v;
}

export function bool(v: unknown, at: string): boolean {
  if (typeof v !== "boolean") throw new LocalConfigError(at, `must be true or false, got ${describe(v)}`);
  return v;
}

export function oneOf<T extends string>(v: unknown, at: string, allowed: readonly T[]): T {
  if (typeof v === "string" && (allowed as readonly string[]).includes(v)) return v as T;
  throw new LocalConfigError(at, `${JSON.stringify(v)} is not one of ${allowed.join(", ")}`);
}

export function ipAddr(v: unknown, at: string): string {
  const s = str(v, at);
  const ip = canonicalIp(s);
  if (ip === undefined) throw new LocalConfigError(at, `"${s}" is not an IP address`);
  return ip;
}

export function port(v: unknown, at: string): number {
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new LocalConfigError(at, `${JSON.stringify(v)} is not a port (0-65535)`);
  }
  return n;
}

export function portMap(v: unknown, at: string): Record<string, number> {
  const o = object(v, at);
  const out: Record<string, number> = {};
  for (const [k, target] of Object.entries(o)) {
    const p = port(k, `${at}["${k}"]`);
    if (p === 0) throw new LocalConfigError(`${at}["${k}"]`, "service port must not be 0");
    out[String(p)] = port(target, `${at}["${k}"]`);
  }
  return out;
}

export function stringMap(v: unknown, at: string): Record<string, string> {
  const o = object(v, at);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(o)) {
    if (k === "") throw new LocalConfigError(at, "label names must not be empty");
    out[k] = str(val, `${at}.${k}`, true);
  }
  return out;
}

/** {network?, address}, or as ztunnel prints them, "network/address" or "address". */
export function networkAddress(v: unknown, at: string): NetworkAddress {
  if (typeof v === "string") {
    const slash = v.lastIndexOf("/");
    return { network: slash < 0 ? DEFAULT_NETWORK : v.slice(0, slash), address: ipAddr(slash < 0 ? v : v.slice(slash + 1), at) };
  }
  const o = object(v, at);
  checkKeys(o, at, ["network", "address"]);
  return {
    network: o.network === undefined ? DEFAULT_NETWORK : str(o.network, `${at}.network`, true),
    address: ipAddr(o.address, `${at}.address`),
  };
}

/** ztunnel's GatewayAddress: `destination` is a network address or {namespace, hostname}. */
export function gatewayAddress(v: unknown, at: string): GatewayAddress {
  const o = object(v, at);
  checkKeys(o, at, ["destination", "hboneMtlsPort"]);
  const d = o.destination;
  let destination: GatewayAddress["destination"];
  if (typeof d === "object" && d !== null && !Array.isArray(d) && "hostname" in d) {
    const h = object(d, `${at}.destination`);
    checkKeys(h, `${at}.destination`, ["namespace", "hostname"]);
    destination = { hostname: { namespace: str(h.namespace, `${at}.destination.namespace`), hostname: str(h.hostname, `${at}.destination.hostname`) } };
  } else {
    destination = { address: networkAddress(d, `${at}.destination`) };
  }
  return { destination, hboneMtlsPort: o.hboneMtlsPort === undefined ? 15008 : port(o.hboneMtlsPort, `${at}.hboneMtlsPort`) };
}

export function checkKeys(o: Obj, at: string, known: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (known.includes(k)) continue;
    const hint = closest(k, known);
    throw new LocalConfigError(at === "" ? k : `${at}.${k}`, `unknown field${hint !== undefined ? ` (did you mean ${hint}?)` : ""}`);
  }
}

export function unique<T extends string | { key: string; at: string }>(items: readonly T[], at: ((i: number) => string) | undefined, what: string): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    const key = typeof item === "string" ? item : item.key;
    const where = typeof item === "string" ? (at?.(i) ?? String(i)) : item.at;
    if (seen.has(key)) throw new LocalConfigError(where, `duplicate ${what} "${key.replace(/^\//, "")}"`);
    seen.add(key);
  });
}

export function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  return typeof v === "object" ? "a mapping" : `${typeof v} ${JSON.stringify(v)}`;
}

export function isIpLiteral(s: string): boolean {
  return isIP(s) !== 0;
}
