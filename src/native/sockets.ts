import { isIP } from "node:net";
import { native } from "./binding.js";
import type { NetnsHandle } from "./netns.js";

export interface SocketSpec {
  family: 4 | 6;
  type: "tcp" | "udp";
  /** SO_MARK (needs CAP_NET_ADMIN). */
  mark?: number;
  reuseAddr?: boolean;
  reusePort?: boolean;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT. */
  transparent?: boolean;
  /** IP_FREEBIND / IPV6_FREEBIND. */
  freebind?: boolean;
  /** IP_BIND_ADDRESS_NO_PORT: bind a source address now, pick the port at connect(). */
  bindAddressNoPort?: boolean;
  noDelay?: boolean;
  keepAlive?: { idleSec: number; intervalSec: number; count: number };
  userTimeoutMs?: number;
  /** IPV6_V6ONLY for family 6 (unset: the kernel default, dual-stack). */
  v6Only?: boolean;
  bind?: { address: string; port: number };
  listen?: { backlog: number };
}

export interface OriginalDst {
  address: string;
  port: number;
  family: 4 | 6;
}

const KNOWN_SPEC_KEYS = new Set([
  "family", "type", "mark", "reuseAddr", "reusePort", "transparent", "freebind", "bindAddressNoPort",
  "noDelay", "keepAlive", "userTimeoutMs", "v6Only", "bind", "listen",
]);

function validateSpec(spec: SocketSpec): void {
  for (const key of Object.keys(spec)) {
    if (!KNOWN_SPEC_KEYS.has(key)) throw new TypeError(`unknown SocketSpec option "${key}"`);
  }
  if (spec.bind !== undefined && isIP(spec.bind.address) !== spec.family) {
    throw new TypeError(`bind address ${spec.bind.address} is not an IPv${spec.family} address`);
  }
  if (spec.mark !== undefined && (!Number.isInteger(spec.mark) || spec.mark < 0 || spec.mark > 0xffffffff)) {
    throw new TypeError(`mark must be a 32-bit unsigned integer, got ${spec.mark}`);
  }
}

/**
 * Creates a non-blocking, close-on-exec TCP/UDP socket inside `netns` (null: the current one)
 * in one native call on this thread: setns in, socket(), setns back (abort if that fails),
 * then options, bind and listen. On failure nothing is left open and a NativeError names the
 * step. The caller owns the returned fd.
 */
export function createSocket(netns: NetnsHandle | null, spec: SocketSpec): number {
  validateSpec(spec);
  return native.createSocket(netns === null ? -1 : netns.usableFd("createSocket"), spec);
}

/** Pre-NAT destination of an accepted, REDIRECTed connection (IPv4 or IPv6 conntrack). */
export function originalDst(fd: number): OriginalDst {
  return native.originalDst(fd);
}

/** SO_NETNS_COOKIE: a 64-bit id of the netns a socket belongs to. */
export function netnsCookie(fd: number): bigint {
  return native.netnsCookie(fd);
}

/** Cookie of a netns, read from a throwaway socket created in it. */
export function netnsCookieOf(netns: NetnsHandle): bigint {
  return native.netnsCookieOf(netns.usableFd("netnsCookieOf"));
}

export function getSocketMark(fd: number): number {
  return native.getSocketMark(fd);
}

/** SO_ACCEPTCONN: whether listen() was called on this socket. */
export function isListening(fd: number): boolean {
  return native.isListening(fd);
}

export function closeFd(fd: number): void {
  native.closeFd(fd);
}

/** dup with close-on-exec (F_DUPFD_CLOEXEC). */
export function dupFd(fd: number): number {
  return native.dupFd(fd);
}
