import { join } from "node:path";
import { logger, type Logger } from "../../shared/log.js";
import type { NetnsRef } from "../../zds/index.js";
import type { NetnsSource } from "../enroll/lifecycle.js";
import type { PodView } from "../enroll/model.js";
import { handlePath, sameIdentity, type NetnsOpener } from "./ops.js";
import { scanPodNetns } from "./proc-scan.js";

export interface FinderDeps {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  procRoot: string;
  opener: NetnsOpener;
  /** The agent's own netns (opened at start; a process there is not a pod). */
  hostNetns(): NetnsRef | undefined;
  addrsIn(netnsPath: string): Promise<string[]>;
  /** Persisted uid → path (NetnsPathStore). */
  persisted(uid: string): string | undefined;
}

/** The netns of a running pod that no CNI event told us about: persisted path first, then /proc. */
export class NetnsFinder {
  private readonly log: Logger;
  constructor(private readonly deps: FinderDeps) {
    this.log = deps.log ?? logger("netns-finder");
  }

  async find(pod: PodView): Promise<NetnsSource | undefined> {
    const saved = this.deps.persisted(pod.uid);
    if (saved !== undefined) {
      const ref = await this.verified(saved, pod);
      if (ref) return { ref, origin: saved };
      this.log.info({ uid: pod.uid, path: saved }, "persisted netns path no longer valid; scanning /proc");
    }
    const { procRoot, opener, addrsIn } = this.deps;
    const hits = await scanPodNetns([{ uid: pod.uid, ips: pod.ips }], { procRoot, opener, addrsIn, hostNetns: this.deps.hostNetns(), log: this.log });
    const hit = hits.get(pod.uid);
    if (!hit) return undefined;
    return { ref: hit.netns, origin: join(this.deps.procRoot, String(hit.pid), "ns", "net") };
  }

  private async verified(path: string, pod: PodView): Promise<NetnsRef | undefined> {
    let ref: NetnsRef;
    try {
      ref = this.deps.opener.open(path);
    } catch {
      return undefined;
    }
    let ok = false;
    try {
      const host = this.deps.hostNetns();
      if (host && sameIdentity(ref, host)) return undefined;
      if (pod.ips.length > 0) {
        const addrs = await this.deps.addrsIn(handlePath(ref));
        if (!pod.ips.some((ip) => addrs.includes(ip))) return undefined;
      }
      ok = true;
      return ref;
    } finally {
      if (!ok) ref.close();
    }
  }
}
