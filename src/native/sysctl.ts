import { native } from "./binding.js";

/**
 * Writes a per-netns sysctl inside the netns behind `netnsFd` (`name` is the path under
 * /proc/sys/net/, e.g. "ipv4/tcp_migrate_req"): one setns pair, open and write on this thread,
 * instead of spawning nsenter + sysctl (a fork of the whole process, milliseconds each).
 */
export function writeNetSysctl(netnsFd: number, name: string, value: string): void {
  native.netnsWriteSysctl(netnsFd, name, value);
}
