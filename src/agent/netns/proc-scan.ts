import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import type { NetnsRef } from "../../zds/index.js";
import { sameIdentity, type NetnsOpener } from "./ops.js";

// Finding the netns of pods that already run (agent start, a namespace labelled later): every
// container process sits in a cgroup whose path carries its pod's UID — cgroupfs
// ".../pod<uid>/<container>", systemd "...-pod<uid_with_underscores>.slice/...".
const POD_UID = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/;

/** The pod UID in a /proc/<pid>/cgroup text, normalised to dashes; undefined if none. */
export function podUidFromCgroup(text: string): string | undefined {
  for (const line of text.split("\n")) {
    const m = POD_UID.exec(line);
    if (m) return m[1]!.replace(/_/g, "-");
  }
  return undefined;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks); the comm field may hold spaces. */
export function startTimeFromStat(stat: string): number | undefined {
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const v = Number(rest[19]);
  return Number.isFinite(v) ? v : undefined;
}

export interface ScanTarget {
  uid: string;
  /** The pod's IPs; the found netns must hold one. Empty = the source knows none (no check). */
  ips: string[];
}

export interface ScanDeps {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  procRoot: string;
  opener: NetnsOpener;
  /** The agent's own (node) netns: a process there is a hostNetwork container, not a pod netns. */
  hostNetns: NetnsRef | undefined;
  /** The global addresses inside a netns (given as a path). */
  addrsIn(netnsPath: string): Promise<string[]>;
}

export interface ScanHit {
  pid: number;
  /** Open handle on the pod's netns; the caller owns it. */
  netns: NetnsRef;
}

interface Candidate {
  pid: number;
  start: number;
}

/**
 * One pass over <procRoot>: for each target uid, the netns of its oldest process that is not
 * in the host netns and holds one of the pod's IPs (the oldest is the sandbox's pause process,
 * which lives as long as the netns it made).
 */
export async function scanPodNetns(targets: readonly ScanTarget[], deps: ScanDeps): Promise<Map<string, ScanHit>> {
  const log = deps.log ?? logger("netns-scan");
  const wanted = new Map(targets.map((t) => [t.uid, t]));
  const found = new Map<string, ScanHit>();
  if (wanted.size === 0) return found;
  const candidates = new Map<string, Candidate[]>();
  let entries: string[];
  try {
    entries = await readdir(deps.procRoot);
  } catch (err) {
    log.warn({ procRoot: deps.procRoot, err: errorMessage(err) }, "cannot list processes");
    return found;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    let uid: string | undefined;
    let start: number | undefined;
    try {
      uid = podUidFromCgroup(await readFile(join(deps.procRoot, name, "cgroup"), "utf8"));
      if (uid === undefined || !wanted.has(uid)) continue;
      start = startTimeFromStat(await readFile(join(deps.procRoot, name, "stat"), "utf8"));
    } catch {
      continue; // the process exited meanwhile
    }
    const list = candidates.get(uid) ?? [];
    list.push({ pid: Number(name), start: start ?? Number.MAX_SAFE_INTEGER });
    candidates.set(uid, list);
  }
  for (const [uid, list] of candidates) {
    list.sort((a, b) => a.start - b.start || a.pid - b.pid);
    const target = wanted.get(uid)!;
    for (const c of list) {
      const path = join(deps.procRoot, String(c.pid), "ns", "net");
      let ref: NetnsRef;
      try {
        ref = deps.opener.open(path);
      } catch {
        continue;
      }
      let keep = false;
      try {
        if (deps.hostNetns && sameIdentity(ref, deps.hostNetns)) continue;
        if (target.ips.length > 0) {
          const addrs = await deps.addrsIn(path);
          if (!target.ips.some((ip) => addrs.includes(ip))) {
            log.debug({ uid, pid: c.pid, want: target.ips, have: addrs }, "process netns does not hold the pod's IPs");
            continue;
          }
        }
        keep = true;
        found.set(uid, { pid: c.pid, netns: ref });
        break;
      } finally {
        if (!keep) ref.close();
      }
    }
  }
  return found;
}
