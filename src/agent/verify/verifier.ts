import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import type { EnrolledPod, PodLifecycle, Redirector, ZdsSink } from "../enroll/lifecycle.js";
import { infoOf } from "../enroll/lifecycle.js";
import { handlePath } from "../netns/ops.js";
import { podRedirectOverrides } from "../redirect/pod-options.js";
import type { ProxyProbe } from "./kernel-listeners.js";

// Beyond Istio (istio#61182, istio#60882): a pod's rules deleted by hand, by a buggy CNI, by a
// container with NET_ADMIN or by a reboot, or its ztunnel listeners gone (a stale CNI DEL, a
// ztunnel that lost the pod), are otherwise only noticed when traffic escapes or blackholes.
// Each pass checks every enabled pod in its own netns (rules with iptables-save, listeners with
// ss), repairs what it finds, and keeps each pod it could not repair listed until a pass finds
// it whole: readiness, `ambientctl status` and the unhealthy-pods gauge show that list.

export type RepairKind = "rules" | "proxies";

export interface UnhealthyPod {
  readonly uid: string;
  /** namespace/name */
  readonly pod: string;
  readonly problems: readonly string[];
}

export interface VerifierDeps {
  /** The node's DNS capture setting (AMBIENT_DNS_CAPTURE); a pod annotation may override it. */
  dnsCapture?: boolean;
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  lifecycle: PodLifecycle;
  redirector: Redirector;
  zds: ZdsSink;
  /** ztunnel's listeners as the pod's kernel lists them; absent = rules only. */
  proxies?: ProxyProbe;
  intervalMs: number;
  onRepair?(kind: RepairKind, uid: string): void;
  onRun?(): void;
  /** After each pass and each change: the pods still not whole. */
  onUnhealthy?(pods: readonly UnhealthyPod[]): void;
}

export class Verifier {
  private readonly log: Logger;
  private readonly broken = new Map<string, UnhealthyPod>();
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

  /** Pods found broken and not repaired yet (readiness lists them). */
  unhealthy(): UnhealthyPod[] {
    return [...this.broken.values()];
  }

  /** One pass over every enabled pod; returns the repairs made. */
  async runOnce(): Promise<{ uid: string; kind: RepairKind }[]> {
    const repairs: { uid: string; kind: RepairKind }[] = [];
    const seen = new Set<string>();
    for (const p of this.deps.lifecycle.all()) {
      const uid = p.pod.uid;
      seen.add(uid);
      try {
        await this.deps.lifecycle.withLock(uid, async () => {
          const cur = this.deps.lifecycle.get(uid);
          if (!cur || cur !== p || cur.state !== "enabled" || cur.netns.closed) {
            this.broken.delete(uid);
            return;
          }
          const left = await this.verifyPod(cur, repairs);
          if (left.length === 0) this.broken.delete(uid);
          else this.broken.set(uid, { uid, pod: `${cur.pod.namespace}/${cur.pod.name}`, problems: left });
        });
      } catch (err) {
        this.log.error({ uid, err: errorMessage(err) }, "verification or repair failed; will try again next pass");
        const prev = this.broken.get(uid);
        // Keep what was found; only the latest repair error is shown with it.
        const found = (prev?.problems ?? []).filter((x) => !x.startsWith("repair failed: "));
        this.broken.set(uid, { uid, pod: `${p.pod.namespace}/${p.pod.name}`, problems: [...found, `repair failed: ${errorMessage(err)}`] });
      }
    }
    for (const uid of this.broken.keys()) if (!seen.has(uid)) this.broken.delete(uid);
    this.deps.onUnhealthy?.(this.unhealthy());
    this.deps.onRun?.();
    return repairs;
  }

  /** Checks one pod, repairs what is wrong, re-checks; returns what is still wrong. */
  private async verifyPod(cur: EnrolledPod, repairs: { uid: string; kind: RepairKind }[]): Promise<string[]> {
    const uid = cur.pod.uid;
    const pod = `${cur.pod.namespace}/${cur.pod.name}`;
    const path = handlePath(cur.netns);
    const left: string[] = [];
    const overrides = podRedirectOverrides(cur.pod.annotations);
    const rules = await this.deps.redirector.check(path, overrides);
    if (rules.state !== "in-place") {
      this.log.warn({ uid, pod, state: rules.state, problems: rules.problems }, "in-pod redirection not in place; re-applying");
      await this.deps.redirector.apply(path, overrides);
      repairs.push({ uid, kind: "rules" });
      this.deps.onRepair?.("rules", uid);
      const again = await this.deps.redirector.check(path, overrides);
      if (again.state !== "in-place") left.push(`in-pod rules ${again.state} after re-applying`);
    }
    if (this.deps.proxies) {
      const dns = { dns: overrides.dnsCapture ?? this.deps.dnsCapture ?? false };
      const found = await this.deps.proxies.check(path, dns);
      if (found !== undefined && found.problems.length > 0) {
        // The pod's rules send its traffic to listeners that are not there: ztunnel lost it.
        this.log.warn({ uid, pod, problems: found.problems }, "ztunnel's listeners are not in the pod; re-sending Add");
        this.broken.set(uid, { uid, pod, problems: found.problems.map((x) => `ztunnel listener ${x}`) });
        this.deps.onUnhealthy?.(this.unhealthy());
        await this.deps.zds.podAdded(uid, infoOf(cur.pod), cur.netns);
        repairs.push({ uid, kind: "proxies" });
        this.deps.onRepair?.("proxies", uid);
        let again = await this.deps.proxies.check(path, dns);
        if (again !== undefined && again.problems.length > 0) {
          // ztunnel still counts the pod as running (an Add of a running pod is a no-op), yet its
          // listeners are gone: have it rebuild the pod (ack = listeners up again).
          this.log.warn({ uid, pod, problems: again.problems }, "listeners still missing after Add; re-creating the pod in ztunnel (Del, Add)");
          await this.deps.zds.podDeleted(uid);
          await this.deps.zds.podAdded(uid, infoOf(cur.pod), cur.netns);
          again = await this.deps.proxies.check(path, dns);
        }
        if (again !== undefined && again.problems.length > 0) left.push(...again.problems.map((x) => `ztunnel listener ${x} after re-creating the pod`));
      }
    }
    return left;
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
