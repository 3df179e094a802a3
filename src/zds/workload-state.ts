import type { Logger } from "../shared/log.js";
import { errorMessage } from "../shared/errors.js";
import { SerialQueue } from "../shared/serial.js";
import type { WorkloadInfo } from "./codec.js";
import { ZdsProtocolError } from "./errors.js";
import type { NetnsRef } from "./transport.js";

/**
 * What ZDS drives on the ztunnel side: the in-pod proxies of one pod. The netns handle stays
 * owned by the ZDS client: dup it to keep a copy; it is closed only after stop() resolved.
 * stop() is called only for a uid whose start() resolved and that was not reported lost.
 *
 * The manager keeps no status of its own: WorkloadState owns each pod's status and its
 * retries. When a running pod's proxies go away on their own (a replaced worker could not get
 * them back, a rebuild failed), the manager lets go of the pod and reports it through
 * onLost; WorkloadState then marks it pending and calls start() again on its retry timer.
 */
export interface WorkloadProxyManager<H extends NetnsRef = NetnsRef> {
  start(uid: string, info: WorkloadInfo, netns: H): Promise<void>;
  stop(uid: string): Promise<void>;
  onLost?(report: (uid: string, error: string) => void): void;
}

interface ProxyEntry<H extends NetnsRef> {
  uid: string;
  info: WorkloadInfo;
  netns: H;
  identity: string;
  status: "starting" | "running" | "failed";
  lastError?: string;
  retry?: NodeJS.Timeout;
}

export interface Readiness {
  ready: boolean;
  /** "ready", or what is pending, for /healthz/ready. */
  reason: string;
  pendingUids: string[];
}

export interface WorkloadSummary {
  uid: string;
  /** namespace/name from the Add. */
  pod?: string;
  status: "starting" | "running" | "failed";
  lastError?: string;
}

function summarize(p: ProxyEntry<NetnsRef>): WorkloadSummary {
  return { uid: p.uid, pod: `${p.info.namespace}/${p.info.name}`, status: p.status, ...(p.lastError !== undefined ? { lastError: p.lastError } : {}) };
}

function identityOf(ref: NetnsRef): string {
  const id = ref.identity();
  return `${id.dev}:${id.ino}`;
}

/**
 * ztunnel's ZDS state (DESIGN §4): running proxies survive reconnects; each connection has its
 * own snapshot bookkeeping (which uids were named before SnapshotSent). All operations are
 * serialized so a retry never races a request for the same pod.
 */
export class WorkloadState<H extends NetnsRef> {
  private readonly proxies = new Map<string, ProxyEntry<H>>();
  private snapshotDone = false;
  private named = new Set<string>();
  private everSnapshot = false;
  private readonly serial = new SerialQueue();
  private closed = false;

  constructor(
    private readonly manager: WorkloadProxyManager<H>,
    private readonly retryIntervalMs: number,
    private readonly log: Logger,
    private readonly onChange: () => void = () => {},
  ) {
    manager.onLost?.((uid, error) => void this.lost(uid, error));
  }

  /** A new connection: forget the previous connection's snapshot progress, keep the proxies. */
  newConnection(): Promise<void> {
    // In the serial order, so a request of the previous connection still in flight cannot
    // land in the new connection's bookkeeping.
    return this.exclusive(async () => {
      this.snapshotDone = false;
      this.named = new Set();
    });
  }

  get snapshotReceived(): boolean {
    return this.snapshotDone;
  }

  readiness(): Readiness {
    const pendingUids = [...this.proxies.values()].filter((p) => p.status !== "running").map((p) => p.uid).sort();
    if (!this.everSnapshot) return { ready: false, reason: "no ZDS snapshot received from the node agent yet", pendingUids };
    if (pendingUids.length > 0) return { ready: false, reason: `workload proxies pending: ${pendingUids.join(", ")}`, pendingUids };
    return { ready: true, reason: "ready", pendingUids };
  }

  workloads(): WorkloadSummary[] {
    return [...this.proxies.values()].map(summarize);
  }

  /** Add: takes ownership of `netns`. Resolves with the Ack text ("" = success). */
  add(uid: string, info: WorkloadInfo, netns: H): Promise<string> {
    return this.exclusive(async () => {
      if (this.closed) {
        netns.close();
        return "ztunnel is shutting down";
      }
      if (!this.snapshotDone) this.named.add(uid);
      let identity: string;
      try {
        identity = identityOf(netns);
      } catch (err) {
        netns.close();
        return `cannot read the identity of the netns of pod ${uid}: ${errorMessage(err)}`;
      }
      const existing = this.proxies.get(uid);
      if (existing && existing.identity === identity) {
        netns.close(); // same pod netns: our existing handle stays the one in use
        if (existing.status === "running") return "";
        clearTimeout(existing.retry);
        existing.info = info;
        return await this.tryStart(existing);
      }
      if (existing) {
        this.log.info({ uid }, "pod netns changed; replacing its proxy");
        await this.remove(existing);
      }
      const entry: ProxyEntry<H> = { uid, info, netns, identity, status: "starting" };
      this.proxies.set(uid, entry);
      return await this.tryStart(entry);
    });
  }

  keep(uid: string): Promise<string> {
    return this.exclusive(async () => {
      if (this.snapshotDone) throw new ZdsProtocolError(`Keep for pod ${uid} after SnapshotSent; Keep is only valid in a snapshot`);
      this.named.add(uid);
      return "";
    });
  }

  del(uid: string): Promise<string> {
    return this.exclusive(async () => {
      if (!this.snapshotDone) {
        // Before SnapshotSent only the bookkeeping changes; reconcile then stops the proxy.
        this.named.delete(uid);
        return "";
      }
      const entry = this.proxies.get(uid);
      if (!entry) return "";
      return await this.remove(entry);
    });
  }

  snapshotSent(): Promise<string> {
    return this.exclusive(async () => {
      if (this.snapshotDone) throw new ZdsProtocolError("second SnapshotSent on one connection");
      this.snapshotDone = true;
      this.everSnapshot = true;
      const stale = [...this.proxies.values()].filter((p) => !this.named.has(p.uid));
      for (const entry of stale) {
        this.log.info({ uid: entry.uid }, "pod not in the snapshot; draining its proxy");
        await this.remove(entry);
      }
      this.onChange();
      return "";
    });
  }

  /** Running and not-running pod counts (metrics gauges) without describing each pod. */
  counts(): { running: number; pending: number } {
    let running = 0;
    for (const p of this.proxies.values()) if (p.status === "running") running++;
    return { running, pending: this.proxies.size - running };
  }

  status(uid: string): WorkloadSummary | undefined {
    const p = this.proxies.get(uid);
    return p === undefined ? undefined : summarize(p);
  }

  /** The manager let go of a running pod's proxies: pending until a retry brings them back. */
  private lost(uid: string, error: string): Promise<void> {
    return this.exclusive(async () => {
      const entry = this.proxies.get(uid);
      if (entry === undefined || entry.status !== "running") return;
      entry.status = "starting";
      entry.lastError = error;
      this.log.warn({ uid, err: error, retryInMs: this.retryIntervalMs }, "workload proxy lost; will restart it");
      this.scheduleRetry(entry);
      this.onChange();
    });
  }

  /** Stops every proxy and closes every netns handle (ztunnel shutdown). */
  close(): Promise<void> {
    this.closed = true;
    return this.exclusive(async () => {
      for (const entry of [...this.proxies.values()]) await this.remove(entry);
    });
  }

  private async tryStart(entry: ProxyEntry<H>): Promise<string> {
    entry.status = "starting";
    try {
      await this.manager.start(entry.uid, entry.info, entry.netns);
    } catch (err) {
      if (this.proxies.get(entry.uid) !== entry) return "";
      entry.status = "failed";
      entry.lastError = errorMessage(err);
      this.log.warn({ uid: entry.uid, err: entry.lastError, retryInMs: this.retryIntervalMs }, "workload proxy failed to start; will retry");
      this.scheduleRetry(entry);
      this.onChange();
      return `failed to start proxy for pod ${entry.uid}: ${entry.lastError}`;
    }
    entry.status = "running";
    delete entry.lastError;
    this.onChange();
    return "";
  }

  private scheduleRetry(entry: ProxyEntry<H>): void {
    if (this.closed) return;
    clearTimeout(entry.retry);
    entry.retry = setTimeout(() => {
      void this.exclusive(async () => {
        if (this.closed || this.proxies.get(entry.uid) !== entry || entry.status === "running") return;
        await this.tryStart(entry);
      });
    }, this.retryIntervalMs);
  }

  /** Drains a pod: stop its proxy if it runs, then close our netns handle. */
  private async remove(entry: ProxyEntry<H>): Promise<string> {
    clearTimeout(entry.retry);
    this.proxies.delete(entry.uid);
    let result = "";
    if (entry.status === "running") {
      try {
        await this.manager.stop(entry.uid);
      } catch (err) {
        result = `failed to stop proxy for pod ${entry.uid}: ${errorMessage(err)}`;
        this.log.warn({ uid: entry.uid, err: errorMessage(err) }, "workload proxy failed to stop");
      }
    }
    if (!entry.netns.closed) entry.netns.close();
    this.onChange();
    return result;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.serial.run(fn);
  }
}
