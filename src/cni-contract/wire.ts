import { isIPv4, isIPv6 } from "./ip-literal.js";
import { AmbientError } from "../shared/errors.js";

// The plugin ↔ agent wire format (DESIGN §5). The ADD body is byte-for-byte what Istio's Go
// plugin sends (encoding/json of CNIPluginAddEvent): Go field names, net.IPNet as
// {"IP","Mask"} with Mask base64, a nil slice as null, and Go's HTML-safe escaping.
export const PLUGIN_EVENT_SOCKET = "pluginevent.sock";
export const PLUGIN_LOG_SOCKET = "log.sock";
export const ADD_PATH = "/cmdadd";
export const DEL_PATH = "/cmddel";
export const HEALTH_PATH = "/healthz";
export const LOG_PATH = "/log";
/**
 * Our extension, as a header so the ADD body stays byte-for-byte Istio's: the sandbox's
 * CNI_CONTAINERID. Istio's plugin does not send it; Istio's agent ignores it.
 */
export const CONTAINER_ID_HEADER = "x-cni-container-id";

export interface PodIp {
  /** Index into the CNI result's interfaces; null when the result did not say. */
  interface: number | null;
  address: string;
  prefixLength: number;
  gateway: string | null;
}

export interface CmdAddEvent {
  netns: string;
  podName: string;
  podNamespace: string;
  ips: PodIp[];
  /**
   * The sandbox's CNI_CONTAINERID, carried in the CONTAINER_ID_HEADER (not the body). With the
   * netns it is the pod's identity in this contract, so a DEL for another sandbox of the same
   * pod is told apart. Absent from Istio's plugin.
   */
  containerId?: string;
}

/** Our extension (Istio has none): DEL tells a cluster-free agent the container is gone. */
export interface CmdDelEvent {
  containerId: string;
  netns: string;
  podName: string;
  podNamespace: string;
}

export class PluginEventDecodeError extends AmbientError {
  constructor(message: string) {
    super("PLUGIN_EVENT_DECODE", message);
  }
}

/** Go's encoding/json escapes these even inside strings; JSON.stringify does not. */
function goEscape(json: string): string {
  return json.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function canonicalIp(ip: string): string {
  if (isIPv4(ip)) return ip;
  // Go prints IPv6 per RFC 5952 (lower case, longest zero run compressed); so does WHATWG URL.
  const host = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (mapped) {
    // Go prints an IPv4-mapped address in dotted form.
    const hi = parseInt(mapped[1] ?? "0", 16);
    const lo = parseInt(mapped[2] ?? "0", 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return host;
}

function maskBytes(prefix: number, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    b[i] = bits === 0 ? 0 : (0xff << (8 - bits)) & 0xff;
  }
  return b;
}

/** Splits a CNI "address" ("10.1.2.3/24") into the pieces the event carries. */
export function podIpFromCidr(cidr: string, iface: number | null, gateway: string | null): PodIp {
  const slash = cidr.indexOf("/");
  const ip = slash < 0 ? "" : cidr.slice(0, slash);
  const prefix = Number(cidr.slice(slash + 1));
  const max = isIPv4(ip) ? 32 : isIPv6(ip) ? 128 : -1;
  if (max < 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
    throw new PluginEventDecodeError(`invalid CIDR "${cidr}"`);
  }
  if (gateway !== null && !isIPv4(gateway) && !isIPv6(gateway)) {
    throw new PluginEventDecodeError(`invalid gateway "${gateway}"`);
  }
  return { interface: iface, address: ip, prefixLength: prefix, gateway };
}

export function encodeAddEvent(ev: CmdAddEvent): string {
  const ips =
    ev.ips.length === 0
      ? null
      : ev.ips.map((ip) => ({
          Interface: ip.interface,
          Address: {
            IP: canonicalIp(ip.address),
            Mask: maskBytes(ip.prefixLength, isIPv4(ip.address) ? 4 : 16).toString("base64"),
          },
          Gateway: ip.gateway === null ? "" : canonicalIp(ip.gateway),
        }));
  return goEscape(JSON.stringify({ Netns: ev.netns, PodName: ev.podName, PodNamespace: ev.podNamespace, IPs: ips }));
}

export function encodeDelEvent(ev: CmdDelEvent): string {
  return goEscape(
    JSON.stringify({ ContainerID: ev.containerId, Netns: ev.netns, PodName: ev.podName, PodNamespace: ev.podNamespace }),
  );
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseJsonObject(body: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch (err) {
    throw new PluginEventDecodeError(`body is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(v)) throw new PluginEventDecodeError("body must be a JSON object");
  return v;
}

function optString(o: Json, key: string): string {
  const v = o[key];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw new PluginEventDecodeError(`"${key}" must be a string`);
  return v;
}

function prefixFromMask(mask: Buffer): number {
  let prefix = 0;
  let ended = false;
  for (const byte of mask) {
    for (let bit = 7; bit >= 0; bit--) {
      const set = (byte >> bit) & 1;
      if (set && ended) throw new PluginEventDecodeError("Mask is not a contiguous prefix");
      if (set) prefix++;
      else ended = true;
    }
  }
  return prefix;
}

function decodeIp(v: unknown, i: number): PodIp {
  if (!isObject(v)) throw new PluginEventDecodeError(`IPs[${i}] must be an object`);
  const iface = v.Interface;
  if (iface !== undefined && iface !== null && (typeof iface !== "number" || !Number.isInteger(iface) || iface < 0)) {
    throw new PluginEventDecodeError(`IPs[${i}].Interface must be a non-negative integer or null`);
  }
  const addr = v.Address;
  if (!isObject(addr) || typeof addr.IP !== "string" || typeof addr.Mask !== "string") {
    throw new PluginEventDecodeError(`IPs[${i}].Address must be {"IP": string, "Mask": base64}`);
  }
  const ip = addr.IP;
  const family = isIPv4(ip) ? 4 : isIPv6(ip) ? 6 : 0;
  if (family === 0) throw new PluginEventDecodeError(`IPs[${i}].Address.IP "${ip}" is not an IP address`);
  const mask = Buffer.from(addr.Mask, "base64");
  if (mask.length !== (family === 4 ? 4 : 16) && mask.length !== 16) {
    throw new PluginEventDecodeError(`IPs[${i}].Address.Mask has ${mask.length} bytes`);
  }
  const gw = optString(v, "Gateway");
  if (gw !== "" && !isIPv4(gw) && !isIPv6(gw)) throw new PluginEventDecodeError(`IPs[${i}].Gateway "${gw}" is not an IP`);
  // A 16-byte mask on an IPv4 address (Go's To16 form) keeps the low 32 bits.
  const prefix = family === 4 && mask.length === 16 ? prefixFromMask(mask.subarray(12)) : prefixFromMask(mask);
  return { interface: typeof iface === "number" ? iface : null, address: ip, prefixLength: prefix, gateway: gw === "" ? null : gw };
}

/** The container id header's value, validated (CNI: letters, digits, '_', '.', '-'); undefined when absent. */
export function decodeContainerId(raw: string | string[] | undefined): string | undefined {
  if (raw === undefined || raw === "") return undefined;
  const v = Array.isArray(raw) ? raw[0] ?? "" : raw;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,1023}$/.test(v)) throw new PluginEventDecodeError(`${CONTAINER_ID_HEADER} "${v.slice(0, 80)}" is not a container id`);
  return v;
}

/** Decodes and validates an ADD body (ours or Istio's plugin's). */
export function decodeAddEvent(body: string): CmdAddEvent {
  const o = parseJsonObject(body);
  const netns = optString(o, "Netns");
  if (netns === "") throw new PluginEventDecodeError(`"Netns" is required`);
  const podName = optString(o, "PodName");
  if (podName === "") throw new PluginEventDecodeError(`"PodName" is required`);
  const ipsRaw = o.IPs;
  if (ipsRaw !== undefined && ipsRaw !== null && !Array.isArray(ipsRaw)) {
    throw new PluginEventDecodeError(`"IPs" must be a list or null`);
  }
  const ips = Array.isArray(ipsRaw) ? ipsRaw.map((v: unknown, i) => decodeIp(v, i)) : [];
  return { netns, podName, podNamespace: optString(o, "PodNamespace"), ips };
}

export function decodeDelEvent(body: string): CmdDelEvent {
  const o = parseJsonObject(body);
  const ev = {
    containerId: optString(o, "ContainerID"),
    netns: optString(o, "Netns"),
    podName: optString(o, "PodName"),
    podNamespace: optString(o, "PodNamespace"),
  };
  if (ev.containerId === "") throw new PluginEventDecodeError(`"ContainerID" is required`);
  return ev;
}
