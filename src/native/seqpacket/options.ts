/** A filesystem path, or a name in the abstract namespace (no file; gone with the last fd). */
export type SeqpacketAddress = string | { abstract: string };

export interface SeqpacketListenOptions {
  backlog?: number;
  /** chmod of the socket file (path addresses only). */
  mode?: number;
  /** Receive buffer per datagram of accepted sockets (default 64 KiB). */
  maxDatagram?: number;
}

export interface SeqpacketConnectOptions {
  /** Receive buffer per datagram (default 64 KiB); larger datagrams are reported as truncated. */
  maxDatagram?: number;
  /** How long to retry while the listener's backlog is full (default 5000 ms). */
  timeoutMs?: number;
}

export const DEFAULT_MAX_DATAGRAM = 64 * 1024;
// Bound the work per readiness callback so one busy socket cannot starve the loop (the poll
// is level-triggered: whatever is left fires again on the next iteration).
export const MAX_PER_WAKEUP = 64;

export interface ParsedAddress {
  name: string;
  abstract: boolean;
  shown: string;
}

export function parseAddress(address: SeqpacketAddress): ParsedAddress {
  if (typeof address === "string") return { name: address, abstract: false, shown: address };
  if (address !== null && typeof address === "object" && typeof address.abstract === "string") {
    return { name: address.abstract, abstract: true, shown: `@${address.abstract}` };
  }
  throw new TypeError("a seqpacket address is a path string or { abstract: name }");
}

export function checkMaxDatagram(v: number | undefined): number {
  const max = v ?? DEFAULT_MAX_DATAGRAM;
  if (!Number.isInteger(max) || max <= 0 || max > 64 * 1024 * 1024) {
    throw new TypeError(`maxDatagram must be an integer in 1..64 MiB, got ${v}`);
  }
  return max;
}
