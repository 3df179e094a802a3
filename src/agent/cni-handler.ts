import { errorMessage } from "../shared/errors.js";
import { logger, type Logger } from "../shared/log.js";
import { decideEnrollment, type DecideOptions } from "./enroll/decide.js";
import type { EnrolledPod, PodLifecycle } from "./enroll/lifecycle.js";
import type { EnrollmentSource } from "./enroll/source.js";
import type { AddDecision, PluginEventHandler } from "./pluginevent/handler.js";
import type { CmdAddEvent, CmdDelEvent } from "../cni-contract/index.js";

export interface CniHandlerDeps {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  source: EnrollmentSource;
  lifecycle: PodLifecycle;
  decide: DecideOptions;
  /** Undefined when ADDs can be served; else why not (the plugin's STATUS). */
  notReadyReason(): string | undefined;
  /** Metrics hook: seconds from receiving an ADD to ztunnel's Ack for the pod. */
  onPodReady?(seconds: number): void;
  /** Metrics hook: the HTTP code the plugin event server answers. */
  onResult?(type: "add" | "del", code: number): void;
}

/**
 * The agent's answer to the CNI plugin. An ambient pod's ADD returns only once the pod is
 * fully enrolled (rules, ztunnel ack, ipset); anything less refuses the ADD, so the runtime
 * tears the sandbox down and retries instead of starting an unprotected pod.
 */
export class CniEventHandler implements PluginEventHandler {
  private readonly log: Logger;
  constructor(private readonly deps: CniHandlerDeps) {
    this.log = deps.log ?? logger("cni-events");
  }

  async onAdd(ev: CmdAddEvent): Promise<AddDecision> {
    let decision: AddDecision;
    try {
      decision = await this.add(ev);
    } catch (err) {
      this.deps.onResult?.("add", 500);
      throw err;
    }
    this.deps.onResult?.("add", decision.outcome === "refused" ? 500 : 200);
    return decision;
  }

  async onDel(ev: CmdDelEvent): Promise<void> {
    try {
      await this.del(ev);
      this.deps.onResult?.("del", 200);
    } catch (err) {
      this.deps.onResult?.("del", 500);
      throw err;
    }
  }

  notReadyReason(): string | undefined {
    return this.deps.notReadyReason();
  }

  private async add(ev: CmdAddEvent): Promise<AddDecision> {
    const received = performance.now();
    const { source, lifecycle } = this.deps;
    const pod = await source.lookup(ev.podNamespace, ev.podName);
    const who = ev.podNamespace === "" ? ev.podName : `${ev.podNamespace}/${ev.podName}`;
    if (!pod) {
      if (source.kind === "kubernetes") return { outcome: "refused", reason: `pod ${who} not found in the Kubernetes API (or not on this node)` };
      return { outcome: "not-enrolled", reason: `pod ${who} is not in this node's inventory` };
    }
    const d = decideEnrollment(pod, source.namespaceLabels(pod.namespace), this.deps.decide);
    if (!d.enroll) return { outcome: "not-enrolled", reason: d.reason };
    try {
      // All or nothing, and only for this sandbox: a failed ADD (a netns that does not exist,
      // ztunnel not acking) undoes what this ADD created and never an enrollment the pod
      // already has in a running sandbox.
      await lifecycle.enroll(pod, { path: ev.netns }, ev.ips.map((ip) => ip.address), {
        annotatePending: false,
        atomic: true,
        onZdsAck: () => this.deps.onPodReady?.((performance.now() - received) / 1000),
        ...(ev.containerId !== undefined && ev.containerId !== "" ? { containerId: ev.containerId } : {}),
      });
      return { outcome: "enrolled" };
    } catch (err) {
      return { outcome: "refused", reason: `pod ${who} could not be added to the ambient mesh: ${errorMessage(err)}` };
    }
  }

  private async del(ev: CmdDelEvent): Promise<void> {
    // In Kubernetes the informer owns removal (a DEL may precede a sandbox re-creation of the
    // same pod); a cluster-free node has no informer, so the DEL releases the pod, but only
    // when it names the enrolled sandbox: the pod's name alone is not its identity (a stale DEL
    // of an old container must not blackhole the running one).
    if (this.deps.source.kind === "kubernetes") return;
    const match = this.deps.lifecycle.all().find((p) => sameSandbox(p, ev));
    if (!match) {
      this.log.info({ pod: ev.podName, containerId: ev.containerId, netns: ev.netns }, "CNI DEL for a sandbox that is not enrolled: nothing to do");
      return;
    }
    this.log.info({ uid: match.pod.uid, pod: ev.podName, containerId: ev.containerId }, "CNI DEL: releasing the pod");
    await this.deps.lifecycle.unenroll(match.pod.uid, { podGone: true });
  }
}

/**
 * Whether a DEL names this enrolled sandbox: by container id when the ADD gave one (unique per
 * sandbox), else by the netns path it was enrolled from.
 */
export function sameSandbox(p: EnrolledPod, ev: CmdDelEvent): boolean {
  if (p.containerId !== undefined) return ev.containerId === p.containerId;
  return ev.netns !== "" && ev.netns === p.origin;
}
