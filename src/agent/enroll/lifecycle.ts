import { AmbientError, errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import type { NetnsRef, PodEntry, PodInventory } from "../../zds/index.js";
import type { RedirectCheck } from "../redirect/index.js";
import { podRedirectOverrides, sameOverrides, type PodRedirectOverrides } from "../redirect/pod-options.js";
import { handlePath, sameIdentity, type NetnsOpener } from "../netns/ops.js";
import type { PodView, RedirectionState } from "./model.js";

// One pod's way into and out of the mesh, in Istio's order (cni/pkg/nodeagent):
//   add:    netns → in-pod rules → ZDS Add (ack) → host ipset → annotate enabled
//   remove: host ipset → ZDS Del (all ztunnels) → in-pod rules (unless the pod is gone)
//           → annotation removed
// Every step is idempotent, so a failed operation is simply run again by the retry queue.
// Operations on one uid are serialised; different pods proceed in parallel.

/** The ZDS server as the lifecycle uses it. */
export interface ZdsSink {
  podAdded(uid: string, info: { name: string; namespace: string; serviceAccount: string }, netns: NetnsRef): Promise<void>;
  podDeleted(uid: string): Promise<void>;
}

/** In-pod redirection (PodRedirector) on a netns path, with the pod's own overrides. */
export interface Redirector {
  apply(netnsPath: string, pod?: PodRedirectOverrides): Promise<unknown>;
  remove(netnsPath: string, pod?: PodRedirectOverrides): Promise<unknown>;
  check(netnsPath: string, pod?: PodRedirectOverrides): Promise<RedirectCheck>;
}

/** Host side: the probe ipset (optional, off when HOST_PROBE_SNAT=false). */
export interface HostSide {
  addPod(ips: readonly string[]): Promise<void>;
  removePod(ips: readonly string[]): Promise<void>;
}

/** Where persisted uid → netns paths go (NetnsPathStore). */
export interface PathStore {
  set(uid: string, path: string, containerId?: string): Promise<void>;
  delete(uid: string): Promise<void>;
  /** The sandbox's container id recorded with the path, if a CNI ADD named it. */
  containerId?(uid: string): string | undefined;
}

export interface LifecycleDeps {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  zds: ZdsSink;
  redirector: Redirector;
  host?: HostSide;
  opener: NetnsOpener;
  store?: PathStore;
  annotate(pod: PodView, state: RedirectionState | undefined): Promise<void>;
  addrsIn(netnsPath: string): Promise<string[]>;
  /**
   * True while no ZDS server exists yet (agent start-up): adds stop at `pending` without trying
   * ZDS or touching the annotation; the first snapshot carries them and they are finished after.
   */
  zdsDeferred?: () => boolean;
  /** Paths under this root (/proc) die with their process and are not persisted. */
  procRoot?: string;
}

export interface EnrolledPod {
  pod: PodView;
  netns: NetnsRef;
  /** Where the netns came from (event path, persisted path, /proc/<pid>/ns/net). */
  origin: string;
  ips: string[];
  state: RedirectionState;
  /**
   * The sandbox's CNI container id when a CNI ADD named it (or it was persisted with the path).
   * With the netns it is the pod's identity towards the plugin: a DEL for another container
   * never touches this pod.
   */
  containerId?: string;
}

export interface EnrollOptions {
  /** Record `pending` on the pod when ztunnel does not ack (default true; a CNI ADD that
   *  fails is rolled back instead, so there is nothing pending to record). */
  annotatePending?: boolean;
  /** The sandbox's CNI container id (a CNI ADD). */
  containerId?: string;
  /** Called once ztunnel acked this call's Add (the pod's listeners are up). */
  onZdsAck?: () => void;
  /**
   * All or nothing (a CNI ADD): unless the pod ends `enabled`, undo exactly what this call
   * created (a new sandbox entry) and throw; a pod that was already enrolled in another
   * sandbox, or in this one, is left as it was.
   */
  atomic?: boolean;
}

/** An atomic enroll that did not complete; whatever it created has been undone. */
export class EnrollAbortedError extends AmbientError {
  constructor(uid: string, reason: string, options?: { cause?: unknown }) {
    super("AGENT_ENROLL_ABORTED", `pod ${uid}: ${reason}`, options);
  }
}

/** The netns of a pod being enrolled: a path to open, or a handle the caller hands over. */
export type NetnsSource = { path: string } | { ref: NetnsRef; origin: string };

/** ztunnel did not take the pod; it stays `pending` and is retried (and is in the next snapshot). */
export class ZdsPendingError extends AmbientError {
  constructor(uid: string, cause: unknown) {
    super("AGENT_ZDS_PENDING", `pod ${uid} is redirected but ztunnel has not taken it yet: ${errorMessage(cause)}`, { cause });
  }
}

export class PodLifecycle implements PodInventory {
  private readonly log: Logger;
  private readonly pods = new Map<string, EnrolledPod>();
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: LifecycleDeps) {
    this.log = deps.log ?? logger("pod-lifecycle");
  }

  get(uid: string): EnrolledPod | undefined {
    return this.pods.get(uid);
  }

  all(): EnrolledPod[] {
    return [...this.pods.values()];
  }

  uids(): string[] {
    return [...this.pods.keys()];
  }

  /** The ZDS snapshot: every pod with rules in place, pending ones included. */
  list(): PodEntry[] {
    return this.all()
      .filter((p) => !p.netns.closed)
      .map((p) => ({ uid: p.pod.uid, info: infoOf(p.pod), netns: p.netns }));
  }

  /** Runs `fn` with the pod's lock held (the verifier and the queue share it). */
  withLock<T>(uid: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(uid) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(uid, tail);
    void tail.then(() => {
      if (this.locks.get(uid) === tail) this.locks.delete(uid);
    });
    return run;
  }

  /**
   * Adds a pod (or finishes a pending one). Resolves when it is `enabled` (or `pending` while
   * ZDS is deferred at start-up); throws ZdsPendingError when ztunnel has not acked.
   */
  enroll(pod: PodView, source: NetnsSource, ips?: readonly string[], opts: EnrollOptions = {}): Promise<EnrolledPod> {
    return this.withLock(pod.uid, () => this.doEnroll(pod, source, ips, opts));
  }

  /**
   * Finishes a pod that is still pending (ZDS Add not acked yet); a no-op when the pod is no
   * longer enrolled or already enabled by the time the lock is held.
   */
  finishPending(pod: PodView): Promise<void> {
    return this.withLock(pod.uid, async () => {
      const cur = this.pods.get(pod.uid);
      if (!cur || cur.state !== "pending" || cur.netns.closed) return;
      await this.doEnroll(pod, { ref: cur.netns, origin: cur.origin }, undefined, {});
    });
  }

  /** Removes a pod from the mesh; `podGone` skips the in-pod rules and the annotation. */
  unenroll(uid: string, opts: { podGone: boolean }): Promise<void> {
    return this.withLock(uid, () => this.doUnenroll(uid, opts.podGone));
  }

  /** Agent shutdown: close every handle, change nothing (the pods stay redirected). */
  closeAll(): void {
    for (const p of this.pods.values()) p.netns.close();
    this.pods.clear();
  }

  private async doEnroll(pod: PodView, source: NetnsSource, givenIps: readonly string[] | undefined, opts: EnrollOptions): Promise<EnrolledPod> {
    if (!opts.atomic) return await this.enrollSteps(pod, source, givenIps, opts, () => undefined);
    let created: EnrolledPod | undefined;
    try {
      const e = await this.enrollSteps(pod, source, givenIps, opts, (fresh) => (created = fresh));
      if (e.state !== "enabled") throw new EnrollAbortedError(pod.uid, "ztunnel has not acknowledged the pod yet");
      return e;
    } catch (err) {
      // Roll back only the sandbox this call added: never an enrollment that was there before.
      if (created !== undefined && this.pods.get(pod.uid) === created) {
        await this.doUnenroll(pod.uid, true).catch((e: unknown) => this.log.warn({ uid: pod.uid, err: errorMessage(e) }, "rollback of a failed add incomplete"));
      }
      throw err;
    }
  }

  private async enrollSteps(
    pod: PodView,
    source: NetnsSource,
    givenIps: readonly string[] | undefined,
    opts: EnrollOptions,
    onCreated: (e: EnrolledPod) => void,
  ): Promise<EnrolledPod> {
    const existing = this.pods.get(pod.uid);
    const incoming = "ref" in source ? source.ref : this.deps.opener.open(source.path);
    const origin = "ref" in source ? source.origin : source.path;
    let entry: EnrolledPod;
    let fresh = false;
    if (existing && sameIdentity(existing.netns, incoming)) {
      if (incoming !== existing.netns) incoming.close();
      const before = podRedirectOverrides(existing.pod.annotations);
      existing.pod = pod;
      if (opts.containerId !== undefined && opts.containerId !== existing.containerId) {
        existing.containerId = opts.containerId;
        if (this.deps.store && !this.isProcPath(existing.origin)) await this.deps.store.set(pod.uid, existing.origin, opts.containerId);
      }
      entry = existing;
      // A running pod's DNS capture annotation changed: its rules follow now (idempotent apply).
      if (!sameOverrides(before, podRedirectOverrides(pod.annotations)) && !existing.netns.closed) {
        await this.deps.redirector.apply(handlePath(existing.netns), podRedirectOverrides(pod.annotations));
      }
    } else {
      if (existing) {
        // Same uid, new sandbox (the runtime recreated it): the old netns is dead weight.
        this.log.info({ uid: pod.uid, old: existing.origin, new: origin }, "pod netns changed; moving the pod to the new one");
        await this.deps.host?.removePod(existing.ips);
        existing.netns.close();
        this.pods.delete(pod.uid);
      }
      let ips: string[];
      try {
        ips = givenIps && givenIps.length > 0 ? [...givenIps] : pod.ips.length > 0 ? [...pod.ips] : await this.deps.addrsIn(handlePath(incoming));
        await this.deps.redirector.apply(handlePath(incoming), podRedirectOverrides(pod.annotations));
      } catch (err) {
        incoming.close();
        throw err;
      }
      // A pod found again after a restart (persisted path) keeps the container id recorded with it.
      const containerId = opts.containerId ?? ("ref" in source && !this.isProcPath(origin) ? this.deps.store?.containerId?.(pod.uid) : undefined);
      entry = { pod, netns: incoming, origin, ips, state: "pending", ...(containerId !== undefined ? { containerId } : {}) };
      fresh = true;
      // Recorded before the ZDS Add: from here on the pod is part of every snapshot.
      this.pods.set(pod.uid, entry);
      onCreated(entry);
      if (this.deps.store && !this.isProcPath(origin)) await this.deps.store.set(pod.uid, origin, containerId);
    }
    if (entry.state === "enabled") return entry;
    if (this.deps.zdsDeferred?.()) return entry;
    // A pending pod retried later: its rules may have been touched meanwhile (idempotent).
    if (!fresh) await this.deps.redirector.apply(handlePath(entry.netns), podRedirectOverrides(pod.annotations));
    try {
      await this.deps.zds.podAdded(pod.uid, infoOf(pod), entry.netns);
    } catch (err) {
      if (opts.annotatePending !== false) await this.deps.annotate(pod, "pending").catch((e: unknown) => this.log.warn({ uid: pod.uid, err: errorMessage(e) }, "cannot annotate pod pending"));
      throw new ZdsPendingError(pod.uid, err);
    }
    opts.onZdsAck?.();
    await this.deps.host?.addPod(entry.ips);
    await this.deps.annotate(pod, "enabled");
    entry.state = "enabled";
    this.log.info({ uid: pod.uid, pod: `${pod.namespace}/${pod.name}`, ips: entry.ips, netns: entry.origin }, "pod enrolled");
    return entry;
  }

  private async doUnenroll(uid: string, podGone: boolean): Promise<void> {
    const entry = this.pods.get(uid);
    if (!entry) return;
    await this.deps.host?.removePod(entry.ips);
    await this.deps.zds.podDeleted(uid);
    if (!podGone && !entry.netns.closed) await this.deps.redirector.remove(handlePath(entry.netns), podRedirectOverrides(entry.pod.annotations));
    if (!podGone) await this.deps.annotate(entry.pod, undefined);
    this.pods.delete(uid);
    entry.netns.close();
    await this.deps.store?.delete(uid);
    this.log.info({ uid, pod: `${entry.pod.namespace}/${entry.pod.name}`, podGone }, "pod removed from the mesh");
  }

  private isProcPath(p: string): boolean {
    const root = this.deps.procRoot ?? "/proc";
    return p.startsWith(root.endsWith("/") ? root : `${root}/`);
  }
}

export function infoOf(pod: PodView): { name: string; namespace: string; serviceAccount: string } {
  return { name: pod.name, namespace: pod.namespace, serviceAccount: pod.serviceAccount };
}
