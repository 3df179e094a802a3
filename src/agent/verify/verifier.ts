import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import type { PodLifecycle, Redirector, ZdsSink } from "../enroll/lifecycle.js";
import { infoOf } from "../enroll/lifecycle.js";
import { handlePath } from "../netns/ops.js";
import { podRedirectOverrides } from "../redirect/pod-options.js";

// Beyond Istio (istio#61182): rules deleted by hand, by a buggy CNI or a container with
// NET_ADMIN, or a ztunnel that lost a pod, are otherwise only noticed when traffic escapes.

/** What ztunnel reports about a pod; undefined = cannot tell (skip). */
export interface ZtunnelView {
  hasPod(uid: string): Promise<boolean | undefined>;
}

export type RepairKind = "rules" | "ztunnel";

export interface VerifierDeps {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  lifecycle: PodLifecycle;
  redirector: Redirector;
  zds: ZdsSink;
  ztunnel?: ZtunnelView;
  intervalMs: number;
  onRepair?(kind: RepairKind, uid: string): void;
  onRun?(): void;
}

export class Verifier {
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;

  constructor(private readonly deps: VerifierDeps) {
    this.log = deps.log ?? logger("verifier");
  }

  start(): void {
    if (this.deps.intervalMs <= 0 || !this.stopped) return;
    this.stopped = false;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One pass over every enabled pod; returns the repairs made. */
  async runOnce(): Promise<{ uid: string; kind: RepairKind }[]> {
    const repairs: { uid: string; kind: RepairKind }[] = [];
    for (const p of this.deps.lifecycle.all()) {
      const uid = p.pod.uid;
      try {
        await this.deps.lifecycle.withLock(uid, async () => {
          const cur = this.deps.lifecycle.get(uid);
          if (!cur || cur !== p || cur.state !== "enabled" || cur.netns.closed) return;
          const path = handlePath(cur.netns);
          const overrides = podRedirectOverrides(cur.pod.annotations);
          const check = await this.deps.redirector.check(path, overrides);
          if (check.state !== "in-place") {
            this.log.warn({ uid, pod: `${cur.pod.namespace}/${cur.pod.name}`, state: check.state, problems: check.problems }, "in-pod redirection not in place; re-applying");
            await this.deps.redirector.apply(path, overrides);
            repairs.push({ uid, kind: "rules" });
            this.deps.onRepair?.("rules", uid);
          }
          if (this.deps.ztunnel && (await this.deps.ztunnel.hasPod(uid)) === false) {
            this.log.warn({ uid, pod: `${cur.pod.namespace}/${cur.pod.name}` }, "ztunnel does not report the pod; re-sending Add");
            await this.deps.zds.podAdded(uid, infoOf(cur.pod), cur.netns);
            repairs.push({ uid, kind: "ztunnel" });
            this.deps.onRepair?.("ztunnel", uid);
          }
        });
      } catch (err) {
        this.log.error({ uid, err: errorMessage(err) }, "verification or repair failed; will try again next pass");
      }
    }
    this.deps.onRun?.();
    return repairs;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.runOnce().then(
        () => undefined,
        () => undefined,
      );
      void this.running.then(() => this.schedule());
    }, this.deps.intervalMs);
  }
}
