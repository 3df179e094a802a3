import type { NetnsHandle } from "../../native/index.js";
import { errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/log.js";
import { SerialQueue } from "../../shared/serial.js";
import type { WorkloadInfo, WorkloadProxyManager } from "../../zds/index.js";
import type { WorkloadStore } from "../state/store.js";
import type { CertManager } from "../tls/cert-manager.js";
import { formatIdentity, type Identity } from "../tls/identity.js";
import type { ListenerInfo, PodSpec } from "../worker/messages.js";
import { PodStartError } from "./errors.js";
import { podFromState, resolvePod } from "./pod-spec.js";
import type { WorkerReply, WorkerRequest } from "./worker-pool.js";

// The real WorkloadProxyManager behind ZDS: a pod is placed only when every worker has its
// listeners in the pod's netns; if any worker fails, the others close theirs and the Add
// fails (ZDS answers an error Ack and retries). A replaced worker gets every placed pod again;
// if that fails (or a rebuild after a state change fails) the manager lets go of the pod and
// reports it lost: the ZDS workload state owns each pod's status and its retries.

/** Where a placed pod's proxies are; its status lives in the ZDS workload state. */
export interface PodPlacement {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly identity: string;
  readonly listeners: readonly ListenerInfo[];
}

/** The pod's netns as the manager uses it: only its fd number, passed on to workers. */
export type PodNetns = Pick<NetnsHandle, "usableFd">;

interface Pod {
  uid: string;
  info: WorkloadInfo;
  /** Owned by the ZDS client; open until our stop() for this uid has resolved. */
  netns: PodNetns;
  spec: Omit<PodSpec, "cert" | "netnsFd">;
  /** Per worker index: the generation that holds our listeners, and what they are. */
  placed: Map<number, { generation: number; listeners: readonly ListenerInfo[] }>;
}

/** What the manager needs of the worker pool (WorkerPool; a fake in unit tests). */
export interface PodWorkers {
  readonly size: number;
  request(index: number, req: WorkerRequest): Promise<WorkerReply & { generation: number }>;
  broadcast(msg: { t: "cert"; cert: PodSpec["cert"] }): void;
  /** Called when a replacement worker is up and needs every pod again. */
  onReplaced(cb: (index: number, generation: number) => void): void;
}

export interface InPodManagerOptions {
  readonly pool: PodWorkers;
  readonly store: WorkloadStore;
  readonly certs: CertManager;
  readonly log: Logger;
  /** ztunnel's trust domain: the identity of a pod the workload state does not have yet. */
  readonly trustDomain: string;
  /** workload_manager_proxies_started/stopped_total. */
  readonly counters?: { proxyStarted(): void; proxyStopped(): void };
  /**
   * Called with the pod's netns fd before its listeners are placed (e.g. enableMigrateReq, so
   * an upgrade's listener handoff keeps queued connections). A failure is logged, not fatal:
   * it only matters during an upgrade.
   */
  readonly prepareNetns?: (netnsFd: number) => Promise<void>;
}

function describe(p: Pod): PodPlacement {
  return {
    uid: p.uid,
    name: p.info.name,
    namespace: p.info.namespace,
    identity: formatIdentity(p.spec.identity),
    listeners: [...p.placed.values()].flatMap((x) => x.listeners),
  };
}

export class InPodManager implements WorkloadProxyManager<NetnsHandle> {
  private readonly pods = new Map<string, Pod>();
  private readonly renewals = new Map<string, { pods: number; unsubscribe: () => void }>();
  private readonly serial = new SerialQueue();
  private shuttingDown = false;
  private reportLost: (uid: string, error: string) => void = () => undefined;

  constructor(private readonly opts: InPodManagerOptions) {
    opts.pool.onReplaced((index, generation) => void this.exclusive(() => this.reAddAll(index, generation)));
  }

  onLost(report: (uid: string, error: string) => void): void {
    this.reportLost = report;
  }

  start(uid: string, info: WorkloadInfo, netns: PodNetns): Promise<void> {
    return this.exclusive(async () => {
      if (this.shuttingDown) throw new PodStartError("ztunnel is shutting down");
      const resolved = resolvePod(this.opts.store, uid, info, this.opts.trustDomain);
      const previous = this.pods.get(uid);
      if (previous !== undefined) await this.removeEverywhere(previous);
      const pod: Pod = {
        uid,
        info,
        netns,
        spec: { uid, name: info.name, namespace: info.namespace, identity: resolved.identity, ips: resolved.ips },
        placed: new Map(),
      };
      // Awaited inside the serial chain: the fd number is then certainly still this pod's
      // netns (DESIGN §1: never used after its close). Microseconds (setns, open, write).
      if (this.opts.prepareNetns !== undefined) {
        await this.opts.prepareNetns(netns.usableFd("pod netns set-up")).catch((err: unknown) =>
          this.opts.log.warn({ uid, err: errorMessage(err) }, "pod netns set-up failed; an upgrade of ztunnel may reset connections queued on this pod's listeners"),
        );
      }
      this.pods.set(uid, pod);
      this.trackIdentity(pod.spec.identity);
      try {
        await this.placeOnAll(pod);
      } catch (err) {
        this.pods.delete(uid);
        this.untrackIdentity(pod.spec.identity);
        throw err;
      }
      this.opts.counters?.proxyStarted();
      if (resolved.known) {
        this.opts.log.info({ uid, pod: `${info.namespace}/${info.name}`, workers: this.opts.pool.size }, "pod listeners up on every worker");
      } else {
        this.opts.log.info(
          { uid, pod: `${info.namespace}/${info.name}`, identity: formatIdentity(resolved.identity), workers: this.opts.pool.size },
          "pod listeners up on every worker; the workload state does not have the pod yet, so its identity comes from ZDS and inbound HBONE waits for its IPs",
        );
      }
    });
  }

  stop(uid: string): Promise<void> {
    return this.exclusive(async () => {
      const pod = this.pods.get(uid);
      if (pod === undefined) return;
      this.pods.delete(uid);
      if (!this.shuttingDown) await this.removeEverywhere(pod);
      this.untrackIdentity(pod.spec.identity);
      this.opts.counters?.proxyStopped();
      this.opts.log.info({ uid, pod: `${pod.info.namespace}/${pod.info.name}` }, "pod proxies stopped on every worker");
    });
  }

  /**
   * The workload state changed: a pod whose IPs or identity moved gets its listeners rebuilt
   * (the HBONE server only accepts CONNECTs to the pod's own IPs, fixed per listener set).
   */
  refresh(): Promise<void> {
    return this.exclusive(async () => {
      if (this.shuttingDown) return;
      for (const pod of [...this.pods.values()]) {
        const next = podFromState(this.opts.store, pod.uid, pod.info);
        // Gone from the state (or not there yet): keep serving with what we know until ZDS
        // removes the pod or the state has it.
        if (next === undefined) continue;
        const same = formatIdentity(next.identity) === formatIdentity(pod.spec.identity) && next.ips.join(",") === pod.spec.ips.join(",");
        if (same) continue;
        this.opts.log.info({ uid: pod.uid, ips: next.ips }, "pod IPs or identity changed; rebuilding its listeners");
        await this.removeEverywhere(pod);
        this.untrackIdentity(pod.spec.identity);
        pod.spec = { ...pod.spec, identity: next.identity, ips: next.ips };
        this.trackIdentity(pod.spec.identity);
        try {
          await this.placeOnAll(pod);
        } catch (err) {
          this.letGo(pod, `rebuilding its listeners failed: ${errorMessage(err)}`);
        }
      }
    });
  }

  /** After the workers drained and stopped: stop() only forgets (nothing left to close). */
  markShutdown(): void {
    this.shuttingDown = true;
  }

  placements(): PodPlacement[] {
    return [...this.pods.values()].map(describe);
  }

  placement(uid: string): PodPlacement | undefined {
    const p = this.pods.get(uid);
    return p === undefined ? undefined : describe(p);
  }

  /** The main thread's netns fd of an enrolled pod found by namespace/name (kernel view). */
  podNetnsFd(namespace: string, name: string): { uid: string; fd: number } | undefined {
    for (const p of this.pods.values()) {
      if (p.info.namespace === namespace && p.info.name === name) return { uid: p.uid, fd: p.netns.usableFd("kernel socket view") };
    }
    return undefined;
  }

  /** Adds the pod on every worker; on any failure removes it from all of them and throws. */
  private async placeOnAll(pod: Pod): Promise<void> {
    const cert = await this.opts.certs.get(pod.spec.identity);
    const full: PodSpec = { ...pod.spec, cert, netnsFd: pod.netns.usableFd("pod add") };
    const indices = [...Array(this.opts.pool.size).keys()];
    const replies = await Promise.all(indices.map((i) => this.opts.pool.request(i, { t: "addPod", pod: full })));
    const errors: string[] = [];
    replies.forEach((r, i) => {
      if (r.ok) pod.placed.set(i, { generation: r.generation, listeners: r.listeners });
      else errors.push(`worker ${i}: ${r.error}`);
    });
    if (errors.length === 0) return;
    // Nothing half-bound: the workers that succeeded close their listeners again.
    await this.removeEverywhere(pod);
    throw new PodStartError(errors.join("; "));
  }

  private async removeEverywhere(pod: Pod): Promise<void> {
    const indices = [...Array(this.opts.pool.size).keys()];
    const replies = await Promise.all(indices.map((i) => this.opts.pool.request(i, { t: "removePod", uid: pod.uid })));
    pod.placed.clear();
    const failed = replies.map((r, i) => (r.ok ? undefined : `worker ${i}: ${r.error}`)).filter((x) => x !== undefined);
    if (failed.length > 0) this.opts.log.warn({ uid: pod.uid, errors: failed }, "removing pod listeners reported errors");
  }

  private async reAddAll(index: number, generation: number): Promise<void> {
    for (const pod of this.pods.values()) {
      if (pod.placed.get(index)?.generation === generation) continue;
      await this.reAdd(pod, index);
    }
  }

  private async reAdd(pod: Pod, index: number): Promise<void> {
    try {
      const cert = await this.opts.certs.get(pod.spec.identity);
      const r = await this.opts.pool.request(index, { t: "addPod", pod: { ...pod.spec, cert, netnsFd: pod.netns.usableFd("pod re-add") } });
      if (!r.ok) throw new PodStartError(r.error);
      pod.placed.set(index, { generation: r.generation, listeners: r.listeners });
      this.opts.log.info({ uid: pod.uid, worker: index }, "pod re-added on the replaced worker");
    } catch (err) {
      const error = `re-adding it on replaced worker ${index} failed: ${errorMessage(err)}`;
      this.opts.log.warn({ uid: pod.uid, worker: index, err: errorMessage(err) }, "re-adding the pod on a replaced worker failed; reporting it lost");
      await this.removeEverywhere(pod);
      this.letGo(pod, error);
    }
  }

  /** Nothing of the pod is left on any worker: forget it and tell the status owner. */
  private letGo(pod: Pod, error: string): void {
    if (this.pods.get(pod.uid) !== pod) return;
    this.pods.delete(pod.uid);
    this.untrackIdentity(pod.spec.identity);
    this.opts.counters?.proxyStopped();
    this.reportLost(pod.uid, error);
  }

  private trackIdentity(identity: Identity): void {
    const key = formatIdentity(identity);
    const t = this.renewals.get(key);
    if (t !== undefined) {
      t.pods++;
      return;
    }
    // Renewed certificates go to every worker (they hold a copy per identity).
    const unsubscribe = this.opts.certs.onRenew(identity, (cert) => this.opts.pool.broadcast({ t: "cert", cert }));
    this.renewals.set(key, { pods: 1, unsubscribe });
  }

  private untrackIdentity(identity: Identity): void {
    const key = formatIdentity(identity);
    const t = this.renewals.get(key);
    if (t === undefined) return;
    if (--t.pods > 0) return;
    t.unsubscribe();
    this.renewals.delete(key);
    this.opts.certs.forget(identity);
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.serial.run(fn);
  }
}
