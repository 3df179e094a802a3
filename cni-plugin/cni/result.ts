import { CniCode, CniError } from "./errors.js";
import { isLegacyResultVersion, type CniVersion } from "./version.js";

// One internal shape for any prevResult (0.3.x, 0.4.0, 1.x), printed in the config's version.
// 0.3.0/0.3.1/0.4.0 share a format: each ip carries "version" ("4"/"6"); interfaces have only
// name/mac/sandbox and routes only dst/gw. 1.0.0 drops "version"; 1.1.0 adds interface
// mtu/socketPath/pciID and route mtu/advmss/priority/table/scope. Fields a target version does
// not define are dropped on the way down; unknown extra fields are never invented.
type Json = Record<string, unknown>;

export interface ResultIp {
  interface?: number;
  address: string;
  gateway?: string;
}

export interface ParsedResult {
  interfaces: Json[];
  ips: ResultIp[];
  routes: Json[];
  dns: Json;
}

const LEGACY_INTERFACE_KEYS = ["name", "mac", "sandbox"];
const LEGACY_ROUTE_KEYS = ["dst", "gw"];
const V1_INTERFACE_KEYS = ["name", "mac", "mtu", "sandbox", "socketPath", "pciID"];
const V1_ROUTE_KEYS = ["dst", "gw", "mtu", "advmss", "priority", "table", "scope"];
const DNS_KEYS = ["nameservers", "domain", "search", "options"];

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function bad(msg: string): CniError {
  return new CniError(CniCode.DecodeFailure, `invalid prevResult: ${msg}`);
}

function objectList(v: unknown, what: string): Json[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every(isObject)) throw bad(`"${what}" must be a list of objects`);
  return v;
}

function pick(obj: Json, keys: string[]): Json {
  const out: Json = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}

/** Validates a prevResult of any supported version into the internal shape. */
export function parseResult(raw: unknown): ParsedResult {
  if (!isObject(raw)) throw bad("must be an object");
  const ips = objectList(raw.ips, "ips").map((ip, i): ResultIp => {
    if (typeof ip.address !== "string" || !ip.address.includes("/")) {
      throw bad(`ips[${i}].address must be a CIDR string`);
    }
    const out: ResultIp = { address: ip.address };
    if (ip.interface !== undefined && ip.interface !== null) {
      if (typeof ip.interface !== "number" || !Number.isInteger(ip.interface) || ip.interface < 0) {
        throw bad(`ips[${i}].interface must be a non-negative integer`);
      }
      out.interface = ip.interface;
    }
    if (ip.gateway !== undefined && ip.gateway !== null && ip.gateway !== "") {
      if (typeof ip.gateway !== "string") throw bad(`ips[${i}].gateway must be a string`);
      out.gateway = ip.gateway;
    }
    return out;
  });
  const dns = raw.dns === undefined || raw.dns === null ? {} : raw.dns;
  if (!isObject(dns)) throw bad(`"dns" must be an object`);
  return {
    interfaces: objectList(raw.interfaces, "interfaces"),
    ips,
    routes: objectList(raw.routes, "routes"),
    dns,
  };
}

function ipFamily(address: string): "4" | "6" {
  return address.includes(":") ? "6" : "4";
}

/** Renders a result in the given version's format (field order as the reference Go types). */
export function formatResult(result: ParsedResult | undefined, version: CniVersion): Json {
  const out: Json = { cniVersion: version };
  if (result === undefined) {
    out.dns = {};
    return out;
  }
  const legacy = isLegacyResultVersion(version);
  if (result.interfaces.length > 0) {
    out.interfaces = result.interfaces.map((i) => pick(i, legacy ? LEGACY_INTERFACE_KEYS : V1_INTERFACE_KEYS));
  }
  if (result.ips.length > 0) {
    out.ips = result.ips.map((ip) => {
      const o: Json = {};
      if (legacy) o.version = ipFamily(ip.address);
      if (ip.interface !== undefined) o.interface = ip.interface;
      o.address = ip.address;
      if (ip.gateway !== undefined) o.gateway = ip.gateway;
      return o;
    });
  }
  if (result.routes.length > 0) {
    out.routes = result.routes.map((r) => pick(r, legacy ? LEGACY_ROUTE_KEYS : V1_ROUTE_KEYS));
  }
  out.dns = pick(result.dns, DNS_KEYS);
  return out;
}
