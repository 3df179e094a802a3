import type { NetnsRef } from "../../zds/index.js";

/** Opening netns files: the native handle in the agent (native-opener.ts), a fake in unit tests. */
export interface NetnsOpener {
  open(path: string): NetnsRef;
}

export function sameIdentity(a: NetnsRef, b: NetnsRef): boolean {
  const x = a.identity();
  const y = b.identity();
  return x.dev === y.dev && x.ino === y.ino;
}

/**
 * A path to an open handle that stays valid as long as the handle does (nsenter and iptables
 * follow it), unlike /proc/<pid>/ns/net which dies with the process.
 */
export function handlePath(ref: NetnsRef): string {
  return `/proc/${process.pid}/fd/${ref.fd}`;
}
