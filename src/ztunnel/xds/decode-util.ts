import { ResourceError } from "./errors.js";
import { canonicalIp } from "../state/ip.js";

// Helpers for reading protobufjs's decoded plain objects, which we treat as untrusted input:
// every accessor checks the type it gets and names the field when it is wrong.

export type Obj = Readonly<Record<string, unknown>>;

export function obj(v: unknown, resource: string, field: string): Obj {
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw new ResourceError(resource, `${field} is not a message`);
  return v as Obj;
}

export function str(o: Obj, key: string): string {
  const v = o[key];
  return typeof v === "string" ? v : "";
}

export function num(o: Obj, key: string): number {
  const v = o[key];
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}

export function arr(o: Obj, key: string): readonly unknown[] {
  const v = o[key];
  return Array.isArray(v) ? v : [];
}

export function strings(o: Obj, key: string): string[] {
  return arr(o, key).filter((x): x is string => typeof x === "string");
}

/** Raw address bytes → canonical IP text (4 or 16 bytes; anything else is refused). */
export function ipFromBytes(v: unknown, resource: string, field: string): string {
  if (!(v instanceof Uint8Array)) throw new ResourceError(resource, `${field} is not bytes`);
  if (v.length === 4) return Array.from(v).join(".");
  if (v.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push((((v[i] ?? 0) << 8) | (v[i + 1] ?? 0)).toString(16));
    const text = groups.join(":");
    // The state's spelling: RFC 5952, IPv4-mapped as dotted (eight groups are always valid IPv6).
    return canonicalIp(text) ?? text;
  }
  throw new ResourceError(resource, `${field} has ${v.length} bytes (an IPv4 address has 4, IPv6 16)`);
}

export function port(v: number, resource: string, field: string, allowZero = false): number {
  if (!Number.isInteger(v) || v > 65535 || (v === 0 && !allowZero)) throw new ResourceError(resource, `${field} ${v} is not a port`);
  return v;
}

/** Names of the fields present in `o` that are in `ignored` (reported in config_dump). */
export function presentFields(o: Obj, ignored: readonly string[]): string[] {
  return ignored.filter((k) => {
    const v = o[k];
    if (v === undefined || v === null || v === "" || v === false || v === 0) return false;
    if (Array.isArray(v)) return v.length > 0;
    if (typeof v === "object" && !(v instanceof Uint8Array)) return Object.keys(v).length > 0;
    return true;
  });
}
