import { ApiException, CoreV1Api, ListWatch, PatchStrategy, Watch, setHeaderOptions, type KubeConfig, type V1Namespace, type V1Pod } from "@kubernetes/client-node";
import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import { REDIRECTION_ANNOTATION, type PodView, type RedirectionState } from "./model.js";
import type { EnrollmentSource } from "./source.js";

export interface KubeSourceOptions {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  kubeConfig: KubeConfig;
  nodeName: string;
  /** Delay before restarting an informer that stopped on an error (doubles, capped). */
  restartBaseMs?: number;
  restartMaxMs?: number;
}

function stringRecord(v: Record<string, string> | undefined): Record<string, string> {
  return { ...(v ?? {}) };
}

/** A V1Pod as the agent sees it (watch events carry raw JSON, lists decoded objects: both fit). */
export function podView(p: V1Pod): PodView | undefined {
  const uid = p.metadata?.uid;
  const name = p.metadata?.name;
  if (!uid || !name) return undefined;
  const phase = p.status?.phase;
  const ips = (p.status?.podIPs ?? []).map((x) => x.ip).filter((ip): ip is string => typeof ip === "string" && ip !== "");
  if (ips.length === 0 && p.status?.podIP) ips.push(p.status.podIP);
  return {
    uid,
    name,
    namespace: p.metadata?.namespace ?? "default",
    serviceAccount: p.spec?.serviceAccountName ?? "default",
    labels: stringRecord(p.metadata?.labels),
    annotations: stringRecord(p.metadata?.annotations),
    hostNetwork: p.spec?.hostNetwork === true,
    ips,
    terminal: phase === "Succeeded" || phase === "Failed",
    requiresIps: true,
  };
}

type Informer<T extends V1Pod | V1Namespace> = ListWatch<T>;

/**
 * Enrollment from the Kubernetes API: informers on Namespaces and on this node's Pods
 * (fieldSelector spec.nodeName). client-node's informer re-watches after a clean close and
 * relists after 410 Gone by itself; after any other error it stops, so it is restarted here
 * with capped backoff (a relist then brings back whatever changed meanwhile).
 */
export class KubeSource implements EnrollmentSource {
  private readonly log: Logger;
  readonly kind = "kubernetes" as const;
  private readonly core: CoreV1Api;
  private readonly pods_: Informer<V1Pod>;
  private readonly namespaces: Informer<V1Namespace>;
  private onChange: () => void = () => {};
  private stopped = false;
  private readonly failing = new Map<string, string>();
  private readonly restartTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: KubeSourceOptions) {
    this.log = opts.log ?? logger("kube-source");
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    const fieldSelector = `spec.nodeName=${opts.nodeName}`;
    this.pods_ = new ListWatch<V1Pod>(
      "/api/v1/pods",
      new Watch(opts.kubeConfig),
      () => this.core.listPodForAllNamespaces({ fieldSelector }),
      false,
      undefined,
      fieldSelector,
    );
    this.namespaces = new ListWatch<V1Namespace>("/api/v1/namespaces", new Watch(opts.kubeConfig), () => this.core.listNamespace(), false);
    for (const [what, inf] of [
      ["pods", this.pods_],
      ["namespaces", this.namespaces],
    ] as const) this.wire(what, inf as Informer<V1Pod | V1Namespace>);
  }

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    // Namespaces first: a pod is only judged with its namespace's labels at hand.
    await this.namespaces.start();
    await this.pods_.start();
    this.log.info({ node: this.opts.nodeName, pods: this.pods_.list().length, namespaces: this.namespaces.list().length }, "informers synced");
  }

  pods(): PodView[] {
    const out: PodView[] = [];
    for (const p of this.pods_.list()) {
      const v = podView(p);
      if (v) out.push(v);
    }
    return out;
  }

  namespaceLabels(namespace: string): Record<string, string> | undefined {
    const ns = this.namespaces.get(namespace);
    return ns ? stringRecord(ns.metadata?.labels) : undefined;
  }

  async lookup(namespace: string, name: string): Promise<PodView | undefined> {
    if (namespace === "") return undefined;
    const cached = this.pods_.get(name, namespace);
    if (cached) return podView(cached);
    // The runtime may be faster than our watch: ask the API server.
    try {
      const pod = await this.core.readNamespacedPod({ name, namespace });
      if (pod.spec?.nodeName !== undefined && pod.spec.nodeName !== this.opts.nodeName) return undefined;
      return podView(pod);
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw err;
    }
  }

  async setRedirection(pod: PodView, state: RedirectionState | undefined): Promise<void> {
    if (pod.annotations[REDIRECTION_ANNOTATION] === state) return;
    try {
      await this.core.patchNamespacedPodStatus(
        { name: pod.name, namespace: pod.namespace, body: { metadata: { annotations: { [REDIRECTION_ANNOTATION]: state ?? null } } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return; // deleted meanwhile
      throw err;
    }
    pod.annotations = { ...pod.annotations };
    if (state === undefined) delete pod.annotations[REDIRECTION_ANNOTATION];
    else pod.annotations[REDIRECTION_ANNOTATION] = state;
  }

  notReadyReason(): string | undefined {
    if (this.failing.size === 0) return undefined;
    return [...this.failing].map(([what, err]) => `${what} informer restarting after: ${err}`).join("; ");
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.restartTimers) clearTimeout(t);
    this.restartTimers.clear();
    await Promise.all([this.pods_.stop(), this.namespaces.stop()]);
  }

  private wire(what: string, inf: Informer<V1Pod | V1Namespace>): void {
    const changed = (): void => this.onChange();
    inf.on("add", changed);
    inf.on("update", changed);
    inf.on("delete", changed);
    let attempt = 0;
    inf.on("connect", () => {
      attempt = 0;
      if (this.failing.delete(what)) this.log.info({ informer: what }, "informer recovered");
    });
    inf.on("error", (err: unknown) => {
      if (this.stopped) return;
      attempt++;
      const base = this.opts.restartBaseMs ?? 200;
      const delay = Math.min(this.opts.restartMaxMs ?? 30_000, base * 2 ** Math.min(attempt - 1, 20));
      this.failing.set(what, errorMessage(err));
      this.log.warn({ informer: what, err: errorMessage(err), retryInMs: delay }, "informer stopped on an error; restarting");
      const t = setTimeout(() => {
        this.restartTimers.delete(t);
        if (this.stopped) return;
        inf.start().catch((e: unknown) => this.log.warn({ informer: what, err: errorMessage(e) }, "informer restart failed"));
      }, delay);
      this.restartTimers.add(t);
    });
  }
}
