import {
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  ListWatch,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1EndpointSlice,
  type V1Namespace,
  type V1Pod,
  type V1Service,
} from "@kubernetes/client-node";
import { logger, type Logger } from "../../shared/log.js";
import type { StateSource } from "../state/source.js";
import type { StateSink } from "../state/store.js";
import type { KubeAuthorizationPolicy } from "./authz-translate.js";
import { KubeSyncError, describeKubeError, httpStatusOf } from "./errors.js";
import { buildState } from "./model.js";
import type { KubePeerAuthentication } from "./peer-authn.js";

// Workload/service state from the Kubernetes API (DESIGN §10, "Kubernetes mode without
// istiod"): informers on Pods, Services, EndpointSlices and Namespaces, cluster-wide (a node
// must know every pod it may connect to). Every change rebuilds the whole state from the
// informer caches, so a resumed watch or a relist can never duplicate or half-apply anything;
// publication is debounced but bounded (maxDelayMs after the first change).
//
// client-node 1.4.0 informers resume after a clean close and relist after 410 by themselves;
// after any other error they stop, so they are restarted here with capped backoff (resuming
// from their last resourceVersion, or relisting if it expired meanwhile).

export interface KubeStateSourceOptions {
  readonly kubeConfig: KubeConfig;
  readonly trustDomain: string;
  /** Default "cluster.local". */
  readonly clusterDomain?: string;
  /** The cluster's network name; default "" (the local config's default). */
  readonly network?: string;
  /** Quiet time before publishing a change (default 100 ms). */
  readonly debounceMs?: number;
  /** Upper bound from a change to its publication, however busy the API is (default 500 ms). */
  readonly maxDelayMs?: number;
  /** First restart delay of a stopped informer (doubles, capped at restartMaxMs). */
  readonly restartBaseMs?: number;
  readonly restartMaxMs?: number;
  /** start() gives up when the caches are not filled within this time (default 30 s). */
  readonly syncTimeoutMs?: number;
  readonly log?: Logger;
}

export type PodListener = (pod: V1Pod) => void;

/** What the identity gate reads: this source's pod cache and its pod events. */
export interface PodDirectory {
  pod(namespace: string, name: string): V1Pod | undefined;
  pods(): readonly V1Pod[];
  onPodEvent(listener: PodListener): () => void;
  /** Publishes pending changes to the store now (so a confirmed pod is in it). */
  flush(): void;
}

type Kind = "namespaces" | "pods" | "services" | "endpointslices" | "authorizationpolicies" | "peerauthentications";

/** Istio's CRDs: a cluster without them has no such policies (not an error, but said). */
const ISTIO_KINDS: ReadonlySet<Kind> = new Set(["authorizationpolicies", "peerauthentications"]);

interface Tracked {
  readonly kind: Kind;
  readonly inf: ListWatch<KubernetesObject>;
  synced: boolean;
  attempt: number;
  restart: NodeJS.Timeout | undefined;
  lastError: string | undefined;
  /** The informer's start() in flight: it opens a watch that stop() cannot abort yet. */
  starting: Promise<void> | undefined;
}

export class KubeStateSource implements StateSource, PodDirectory {
  readonly name: string;
  private readonly tracked: Tracked[] = [];
  private readonly podListeners = new Set<PodListener>();
  private readonly log: Logger;
  private sink: StateSink | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private firstChangeAt = 0;
  private lastJson = "";
  private syncWaiter: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private readonly podsInf: ListWatch<V1Pod>;
  private readonly servicesInf: ListWatch<V1Service>;
  private readonly slicesInf: ListWatch<V1EndpointSlice>;
  private readonly namespacesInf: ListWatch<V1Namespace>;
  private readonly authzInf: ListWatch<KubernetesObject & KubeAuthorizationPolicy>;
  private readonly peerAuthnInf: ListWatch<KubernetesObject & KubePeerAuthentication>;
  /** Istio kinds whose CRD is not installed (listed as empty; retried). */
  private readonly absent = new Set<Kind>();

  constructor(private readonly opts: KubeStateSourceOptions) {
    this.name = `kubernetes:${opts.kubeConfig.getCurrentCluster()?.server ?? "?"}`;
    this.log = opts.log ?? logger("ztunnel.cluster");
    const kc = opts.kubeConfig;
    const core = kc.makeApiClient(CoreV1Api);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    this.namespacesInf = this.track("namespaces", "/api/v1/namespaces", () => core.listNamespace());
    this.podsInf = this.track("pods", "/api/v1/pods", () => core.listPodForAllNamespaces());
    this.servicesInf = this.track("services", "/api/v1/services", () => core.listServiceForAllNamespaces());
    this.slicesInf = this.track("endpointslices", "/apis/discovery.k8s.io/v1/endpointslices", () => discovery.listEndpointSliceForAllNamespaces());
    const custom = kc.makeApiClient(CustomObjectsApi);
    const istio = <T extends KubernetesObject>(plural: Kind): Promise<KubernetesListObject<T>> =>
      custom.listClusterCustomObject({ group: "security.istio.io", version: "v1", plural }) as Promise<KubernetesListObject<T>>;
    this.authzInf = this.track("authorizationpolicies", "/apis/security.istio.io/v1/authorizationpolicies", () => istio("authorizationpolicies"));
    this.peerAuthnInf = this.track("peerauthentications", "/apis/security.istio.io/v1/peerauthentications", () => istio("peerauthentications"));
  }

  /** Lists everything, publishes the first state, then follows changes. */
  async start(sink: StateSink): Promise<void> {
    this.sink = sink;
    const timeoutMs = this.opts.syncTimeoutMs ?? 30_000;
    const synced = new Promise<void>((resolve, reject) => {
      this.syncWaiter = { resolve, reject };
    });
    // Rejections may come while the informers are still starting: handled by the await below.
    synced.catch(() => undefined);
    const timeout = setTimeout(() => {
      const missing = this.tracked.filter((t) => !t.synced);
      this.syncWaiter?.reject(
        new KubeSyncError(
          `could not list ${missing.map((t) => t.kind).join(", ")} from the Kubernetes API at ${this.server()} within ${timeoutMs} ms` +
            `${missing[0]?.lastError !== undefined ? ` (last error: ${missing[0].lastError})` : ""}; check that the API server is reachable from this node`,
        ),
      );
    }, timeoutMs);
    try {
      // A failed list does not reject start(): the error handler schedules a restart.
      await Promise.all(this.tracked.map((t) => this.startInformer(t)));
      this.checkSynced();
      await synced;
    } catch (err) {
      await this.close();
      throw err;
    } finally {
      clearTimeout(timeout);
      this.syncWaiter = undefined;
    }
    this.publish();
    this.log.info(
      { server: this.server(), pods: this.podsInf.list().length, services: this.servicesInf.list().length, endpointSlices: this.slicesInf.list().length },
      "Kubernetes informers synced",
    );
  }

  async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const t of this.tracked) clearTimeout(t.restart);
    await Promise.all(this.tracked.map((t) => t.inf.stop()));
    // client-node only learns a watch's abort handle once the watch request is answered, so a
    // watch opening right now would outlive stop(): stop again once it is open (bounded wait).
    const late = this.tracked.map((t) => t.starting?.then(() => t.inf.stop()));
    await Promise.race([Promise.allSettled(late), new Promise((r) => setTimeout(r, 1_000).unref())]);
  }

  private startInformer(t: Tracked): Promise<void> {
    const p = t.inf.start().finally(() => {
      if (t.starting === p) t.starting = undefined;
    });
    t.starting = p;
    return p;
  }

  pod(namespace: string, name: string): V1Pod | undefined {
    return this.podsInf.get(name, namespace);
  }

  pods(): readonly V1Pod[] {
    return this.podsInf.list();
  }

  onPodEvent(listener: PodListener): () => void {
    this.podListeners.add(listener);
    return () => this.podListeners.delete(listener);
  }

  flush(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.publish();
  }

  /** Informers currently restarting after an error (for readiness); empty when healthy. */
  problems(): string[] {
    return this.tracked.filter((t) => t.lastError !== undefined).map((t) => `${t.kind} informer restarting after: ${t.lastError}`);
  }

  private server(): string {
    return this.opts.kubeConfig.getCurrentCluster()?.server ?? "?";
  }

  private track<T extends KubernetesObject>(kind: Kind, path: string, list: () => Promise<KubernetesListObject<T>>): ListWatch<T> {
    let t: Tracked | undefined;
    const inf = new ListWatch<T>(
      path,
      new Watch(this.opts.kubeConfig),
      async () => {
        const result = await list();
        // The informer fills its cache right after this resolves (same microtask chain).
        setImmediate(() => {
          if (t !== undefined && !t.synced) {
            t.synced = true;
            this.checkSynced();
          }
        });
        return result;
      },
      false,
    );
    t = { kind, inf: inf as unknown as ListWatch<KubernetesObject>, synced: false, attempt: 0, restart: undefined, lastError: undefined, starting: undefined };
    const tracked = t;
    this.tracked.push(tracked);
    const changed = (obj: T): void => {
      // Schedule first: a pod listener (the identity gate) may flush() right away, and a
      // flush with nothing scheduled would leave this very change out of the store.
      this.schedule();
      if (kind === "pods") for (const l of this.podListeners) l(obj as V1Pod);
    };
    inf.on("add", changed);
    inf.on("update", changed);
    inf.on("delete", changed);
    inf.on("connect", () => {
      // "connect" precedes the (re)list or re-watch; a successful watch resets the backoff.
      if (tracked.lastError !== undefined) this.log.info({ informer: kind }, "informer reconnecting");
    });
    inf.on("error", (err: unknown) => this.onError(tracked, err));
    return inf;
  }

  private onError(t: Tracked, err: unknown): void {
    if (this.stopped) return;
    const status = httpStatusOf(err);
    if (status === 404 && ISTIO_KINDS.has(t.kind)) {
      // Istio's CRDs are not installed: there are no such policies. Not a readiness problem;
      // keep retrying (capped backoff) so installing Istio's CRDs later is picked up.
      if (!this.absent.has(t.kind)) this.log.warn({ informer: t.kind }, "security.istio.io/v1 is not served (Istio's CRDs not installed): no such policies are in effect");
      this.absent.add(t.kind);
      if (!t.synced) {
        t.synced = true;
        this.checkSynced();
      }
      this.retry(t, 30_000);
      return;
    }
    t.lastError = describeKubeError(err);
    if (!t.synced && (status === 401 || status === 403)) {
      // Credentials or RBAC will not fix themselves while we wait.
      this.syncWaiter?.reject(
        new KubeSyncError(
          `the Kubernetes API at ${this.server()} refused to list ${t.kind} (${t.lastError}): ` +
            (status === 401
              ? "the credentials were rejected (check the service account token or KUBECONFIG)"
              : `ztunnel's service account needs list/watch on pods, services, namespaces, discovery.k8s.io endpointslices and security.istio.io authorizationpolicies and peerauthentications`),
          { cause: err },
        ),
      );
      return;
    }
    this.retry(t);
  }

  private retry(t: Tracked, minDelayMs = 0): void {
    t.attempt++;
    const base = this.opts.restartBaseMs ?? 200;
    const delay = Math.max(minDelayMs, Math.min(this.opts.restartMaxMs ?? 30_000, base * 2 ** Math.min(t.attempt - 1, 20)));
    if (t.lastError !== undefined) this.log.warn({ informer: t.kind, err: t.lastError, retryInMs: delay }, "informer stopped on an error; restarting it");
    clearTimeout(t.restart);
    t.restart = setTimeout(() => {
      t.restart = undefined;
      if (this.stopped) return;
      // Resumes from the informer's last resourceVersion; a 410 there makes it relist.
      this.startInformer(t).then(
        () => {
          // start() resolves once the watch is open; had it failed, onError would have
          // scheduled the next attempt already.
          if (this.stopped || t.restart !== undefined) return;
          if (this.absent.delete(t.kind)) this.log.info({ informer: t.kind }, "security.istio.io/v1 is served now: its policies are followed");
          if (t.lastError === undefined) return;
          t.attempt = 0;
          t.lastError = undefined;
          this.log.info({ informer: t.kind }, "informer recovered");
        },
        (e: unknown) => this.onError(t, e),
      );
    }, delay);
  }

  private checkSynced(): void {
    if (this.syncWaiter !== undefined && this.tracked.every((t) => t.synced)) this.syncWaiter.resolve();
  }

  private schedule(): void {
    if (this.stopped || this.sink === undefined || this.syncWaiter !== undefined) return;
    const now = Date.now();
    if (this.timer === undefined) this.firstChangeAt = now;
    clearTimeout(this.timer);
    const maxDelay = this.opts.maxDelayMs ?? 500;
    const delay = Math.max(0, Math.min(this.opts.debounceMs ?? 100, this.firstChangeAt + maxDelay - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.publish();
    }, delay);
  }

  private publish(): void {
    if (this.sink === undefined || this.stopped) return;
    const { data, conflicts } = buildState(
      {
        pods: this.podsInf.list(),
        services: this.servicesInf.list(),
        endpointSlices: this.slicesInf.list(),
        namespaces: this.namespacesInf.list(),
        authorizationPolicies: this.authzInf.list(),
        peerAuthentications: this.peerAuthnInf.list(),
      },
      { trustDomain: this.opts.trustDomain, clusterDomain: this.opts.clusterDomain ?? "cluster.local", network: this.opts.network ?? "" },
    );
    const json = JSON.stringify(data);
    // Pod status heartbeats and the like change nothing we model: no new version for them.
    if (json === this.lastJson) return;
    this.lastJson = json;
    if (conflicts.length > 0) this.log.warn({ pods: conflicts }, "pods left out: another pod holds the same IP");
    this.sink.replace(data, this.name);
    this.log.debug({ workloads: data.workloads.length, services: data.services.length }, "cluster state published");
  }
}
