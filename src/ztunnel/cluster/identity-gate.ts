import type { V1Pod } from "@kubernetes/client-node";
import { logger, type Logger } from "../../shared/log.js";
import type { WorkloadInfo } from "../../zds/index.js";
import type { Identity } from "../tls/identity.js";
import { IdentityNotConfirmedError } from "./errors.js";
import type { PodDirectory } from "./kube-source.js";
import { isTerminal, podServiceAccount } from "./model.js";

// Cluster mode signs with the mesh root on every node, so a node must not sign for pods it
// does not run. A ZDS Add names a pod (the agent's word); before ztunnel serves that pod's
// identity, Kubernetes must confirm the pod on THIS node with that service account. The API
// may lag the container runtime, so we wait a bounded time, as Istio's ztunnel waits for
// the pod's xDS workload; a pod that never shows up, or shows up elsewhere, is refused.

/**
 * Below the node agent's ZDS Ack timeout (5 s by default): a longer wait would make the agent
 * drop the ZDS connection instead of receiving our error Ack. A pod is bound to its node in
 * the API before the kubelet even starts it, so the wait is normally our informer's lag.
 */
export const DEFAULT_CONFIRM_TIMEOUT_MS = 4_000;

export interface IdentityGateOptions {
  readonly pods: PodDirectory;
  readonly nodeName: string;
  readonly trustDomain: string;
  readonly timeoutMs?: number;
  readonly log?: Logger;
}

type Verdict = { t: "ok" } | { t: "wait"; why: string } | { t: "reject"; why: string };

interface Waiter {
  readonly uid: string;
  readonly check: () => boolean;
}

export class IdentityGate {
  private readonly waiters = new Set<Waiter>();
  private readonly unsubscribe: () => void;
  private readonly log: Logger;
  readonly timeoutMs: number;

  constructor(private readonly opts: IdentityGateOptions) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_CONFIRM_TIMEOUT_MS;
    this.log = opts.log ?? logger("ztunnel.cluster");
    this.unsubscribe = opts.pods.onPodEvent(() => {
      for (const w of [...this.waiters]) if (w.check()) this.waiters.delete(w);
    });
  }

  /**
   * Resolves once Kubernetes shows pod `info.namespace/info.name` (uid `uid`) on this node,
   * running as `info.serviceAccount` (no IP needed: the kubelet reports it only after the CNI
   * ADD, which itself waits for this Add's Ack); rejects with IdentityNotConfirmedError when
   * Kubernetes contradicts the Add or the wait times out.
   */
  admit(uid: string, info: WorkloadInfo): Promise<void> {
    const what = `pod ${info.namespace}/${info.name} (uid ${uid})`;
    const first = this.judge(uid, info);
    if (first.t === "ok") return this.confirmed(what);
    if (first.t === "reject") return Promise.reject(this.refuse(what, first.why));
    return new Promise<void>((resolve, reject) => {
      let last = first.why;
      const waiter: Waiter = {
        uid,
        check: () => {
          const v = this.judge(uid, info);
          if (v.t === "wait") {
            last = v.why;
            return false;
          }
          clearTimeout(timer);
          if (v.t === "ok") this.confirmed(what).then(resolve, reject);
          else reject(this.refuse(what, v.why));
          return true;
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(this.refuse(what, `not confirmed by Kubernetes within ${this.timeoutMs} ms (${last})`));
      }, this.timeoutMs);
      this.waiters.add(waiter);
      this.log.info({ uid, pod: `${info.namespace}/${info.name}`, waitMs: this.timeoutMs, why: last }, "waiting for Kubernetes to confirm the pod on this node");
    });
  }

  /** True when a pod on this node (per Kubernetes, now) runs with this identity. */
  confirms(identity: Identity): boolean {
    if (identity.trustDomain !== this.opts.trustDomain) return false;
    return this.opts.pods
      .pods()
      .some(
        (p) =>
          p.spec?.nodeName === this.opts.nodeName &&
          p.metadata?.namespace === identity.namespace &&
          podServiceAccount(p) === identity.serviceAccount &&
          !isTerminal(p),
      );
  }

  /** Pods still waiting (for readiness: what ztunnel is waiting on). */
  pending(): string[] {
    return [...this.waiters].map((w) => w.uid);
  }

  close(): void {
    this.unsubscribe();
  }

  private async confirmed(what: string): Promise<void> {
    // The store must hold the pod before the manager resolves it: publish pending changes now.
    this.opts.pods.flush();
    this.log.debug({ pod: what }, "pod confirmed on this node by Kubernetes");
  }

  private refuse(what: string, why: string): IdentityNotConfirmedError {
    const err = new IdentityNotConfirmedError(`${what}: ${why}; no certificate is issued for it on node ${this.opts.nodeName}`);
    this.log.warn({ pod: what, why }, "refusing a pod Kubernetes does not confirm on this node");
    return err;
  }

  private judge(uid: string, info: WorkloadInfo): Verdict {
    const pod: V1Pod | undefined = this.opts.pods.pod(info.namespace, info.name);
    if (pod === undefined) return { t: "wait", why: "no such pod in Kubernetes yet" };
    const actualUid = pod.metadata?.uid ?? "";
    // Another incarnation of the same name (e.g. a StatefulSet pod being replaced): wait.
    if (uid !== "" && actualUid !== uid) return { t: "wait", why: `Kubernetes has uid ${actualUid} for that name` };
    if (isTerminal(pod)) return { t: "reject", why: `the pod has terminated (phase ${pod.status?.phase ?? "?"})` };
    const node = pod.spec?.nodeName;
    if (node === undefined || node === "") return { t: "wait", why: "the pod is not scheduled yet" };
    // Node and service account of a pod never change: a mismatch is final.
    if (node !== this.opts.nodeName) return { t: "reject", why: `Kubernetes runs it on node ${node}, not on this node (${this.opts.nodeName})` };
    const sa = podServiceAccount(pod);
    if (info.serviceAccount !== "" && info.serviceAccount !== sa) {
      return { t: "reject", why: `it runs as service account ${sa}, but the Add names ${info.serviceAccount}` };
    }
    return { t: "ok" };
  }
}
