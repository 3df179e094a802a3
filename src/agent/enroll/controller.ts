import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import { NetnsNotFoundError } from "../errors.js";
import { decideEnrollment, type DecideOptions } from "./decide.js";
import type { NetnsSource, PodLifecycle } from "./lifecycle.js";
import { REDIRECTION_ANNOTATION, type PodView } from "./model.js";
import { RetryQueue } from "./queue.js";
import type { EnrollmentSource } from "./source.js";

export interface ControllerOptions {
  decide: DecideOptions;
  retryBaseMs: number;
  retryMaxMs: number;
  concurrency: number;
}

export interface ControllerDeps {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  source: EnrollmentSource;
  lifecycle: PodLifecycle;
  findNetns(pod: PodView): Promise<NetnsSource | undefined>;
  /** Metrics hook: one call per reconcile of one pod. */
  onReconcile?(ok: boolean): void;
}

/**
 * Level-based enrollment: whenever the source changes, every pod it knows and every pod that
 * is enrolled is queued; reconciling one uid compares "should be in the mesh" with "is in the
 * mesh" and runs the lifecycle step that closes the gap.
 */
export class EnrollmentController {
  private readonly log: Logger;
  readonly queue: RetryQueue;
  private synced = false;

  constructor(
    private readonly deps: ControllerDeps,
    private readonly opts: ControllerOptions,
  ) {
    this.log = deps.log ?? logger("enroll");
    this.queue = new RetryQueue((uid) => this.reconcile(uid), { baseDelayMs: opts.retryBaseMs, maxDelayMs: opts.retryMaxMs, concurrency: opts.concurrency, log: this.log }, (_k, ok) =>
      deps.onReconcile?.(ok),
    );
  }

  get initialSyncDone(): boolean {
    return this.synced;
  }

  /** Starts the source and runs one full pass; resolves when that pass is done (failures back off). */
  async start(): Promise<void> {
    await this.deps.source.start(() => this.enqueueAll());
    this.enqueueAll();
    await this.queue.idle();
    this.synced = true;
    this.log.info({ enrolled: this.deps.lifecycle.uids().length }, "initial enrollment pass done");
  }

  enqueueAll(): void {
    const uids = new Set([...this.deps.source.pods().map((p) => p.uid), ...this.deps.lifecycle.uids()]);
    for (const uid of uids) this.queue.add(uid);
  }

  /** Pods whose ZDS Add is still missing (e.g. ztunnel just connected): try again now. */
  retryPending(): void {
    for (const p of this.deps.lifecycle.all()) if (p.state === "pending") this.queue.add(p.pod.uid);
  }

  async stop(): Promise<void> {
    await this.queue.stop();
    await this.deps.source.stop();
  }

  async reconcile(uid: string): Promise<void> {
    const { source, lifecycle } = this.deps;
    const pod = source.pods().find((p) => p.uid === uid);
    const enrolled = lifecycle.get(uid);
    if (!pod) {
      if (enrolled) await lifecycle.unenroll(uid, { podGone: true });
      return;
    }
    const d = decideEnrollment(pod, source.namespaceLabels(pod.namespace), this.opts.decide);
    if (!d.enroll) {
      if (enrolled) {
        this.log.info({ uid, pod: `${pod.namespace}/${pod.name}`, reason: d.reason }, "pod leaves the mesh");
        await lifecycle.unenroll(uid, { podGone: false });
      } else if (pod.annotations[REDIRECTION_ANNOTATION] !== undefined && !pod.terminal) {
        await source.setRedirection(pod, undefined); // left over from an earlier agent
      }
      return;
    }
    if (enrolled) {
      if (enrolled.state === "pending") await lifecycle.finishPending(pod);
      return;
    }
    // Without IPs the sandbox is not set up yet: its CNI ADD will enroll it.
    if (pod.requiresIps && pod.ips.length === 0) return;
    const netns = await this.deps.findNetns(pod);
    if (!netns) {
      // A pod the API says runs must have a netns here (retry); an inventory pod may simply
      // not be started yet (its CNI ADD or a change will bring it).
      if (pod.ips.length > 0) throw new NetnsNotFoundError(uid, "no process of the pod found (cgroup path with its UID, netns holding its IP)");
      this.log.debug({ uid }, "pod not running here (no netns found); waiting for its CNI ADD");
      return;
    }
    try {
      await lifecycle.enroll(pod, netns);
    } catch (err) {
      this.log.warn({ uid, pod: `${pod.namespace}/${pod.name}`, err: errorMessage(err) }, "enrollment incomplete");
      throw err;
    }
  }
}
