import { parentPort, threadId, workerData } from "node:worker_threads";
import { errorMessage } from "../../shared/errors.js";
import type { LevelWithSilent } from "pino";
import { rootLogger } from "../../shared/log.js";
import { PolicyAuthorizer } from "../authz/authorizer.js";
import { WorkloadStore } from "../state/store.js";
import type { StateSnapshot } from "../state/types.js";
import { WorkerCerts } from "./certs.js";
import type { FromWorker, OpenConnection, ToWorker, WorkerSettings } from "./messages.js";
import { PodProxy } from "./pod-proxy.js";
import { WorkerTelemetry } from "./telemetry.js";
import { WorkerDns } from "../dns/worker-dns.js";
import { closeFd, setThreadName } from "../../native/index.js";
import { HboneBalancer } from "./hbone-balance.js";
import { probeFds, WorkerBudget } from "../proxy/budget.js";
import { ThrottledLog } from "../proxy/limits.js";

// Entry of a proxy worker thread (DESIGN §1). The main thread sends pods, state snapshots and
// certificates; this thread creates its own listeners in each pod's netns (setns happens on
// this thread, inside the native createSocket call) and proxies what it accepts.

export interface WorkerInit {
  readonly settings: WorkerSettings;
  readonly snapshot: StateSnapshot;
  /** Open inbound HBONE connections per worker, shared by all of them (worker/hbone-balance.ts). */
  readonly hboneLoad?: SharedArrayBuffer;
}

const port = parentPort;
if (port === null) throw new Error("src/ztunnel/worker/entry.js must run as a worker thread");
const init = workerData as WorkerInit;
// This thread's root logger (each worker thread is its own composition root).
const root = rootLogger();
const log = root.child({ scope: "ztunnel.worker", worker: init.settings.index, threadId });
const post = (m: FromWorker): void => port.postMessage(m);
// Named for the kernel (top -H, perf, /proc/<pid>/task/*/comm), where Node 20 leaves every
// worker "node": per-thread CPU figures then say which worker is busy.
try {
  setThreadName(`ztunnel-w${init.settings.index}`);
} catch (err) {
  log.warn({ err: errorMessage(err) }, "could not name this worker's thread; per-thread tools show it as node");
}

const store = new WorkloadStore();
store.applySnapshot(init.snapshot);
const certs = new WorkerCerts();
const budget = new WorkerBudget(init.settings.fdBudget, new ThrottledLog(log));
const telemetry = new WorkerTelemetry((t) => post({ t: "telemetry", ...t }), init.settings.flushIntervalMs, { limits: () => budget.takeCounters() });
// libuv absorbs EMFILE on accept (it drops the pending connections itself and tells nobody),
// so fd exhaustion is also looked for once a second: one open/close of /dev/null.
const probe = setInterval(() => {
  const code = probeFds();
  if (code !== undefined) budget.exhausted(code, "probe");
}, 1_000);
probe.unref();
const pods = new Map<string, PodProxy>();
const balancer = init.hboneLoad === undefined ? undefined : new HboneBalancer(new Int32Array(init.hboneLoad), init.settings.index);
const authorizer = new PolicyAuthorizer({
  policies: () => store.state.policies,
  workload: (ip) => store.workloadByIp(ip),
  log: root.child({ scope: "ztunnel.authz", worker: init.settings.index }),
});
const dnsSettings = init.settings.dns;
const dns =
  dnsSettings === undefined
    ? undefined
    : new WorkerDns({ settings: dnsSettings, store, mark: init.settings.packetMark, reusePort: init.settings.reusePort, ipv6: init.settings.ipv6, log });
if (dns !== undefined) telemetry.dnsSource = () => dns.metrics.flush();
const deps = {
  ...(dns !== undefined ? { dns } : {}),
  settings: init.settings,
  store,
  certs,
  telemetry,
  budget,
  authorizer,
  log,
  fdOpened: (fd: number) => post({ t: "fdOpened", fd }),
  fdClosed: (fd: number) => post({ t: "fdClosed", fd }),
  ...(balancer !== undefined ? { balance: { balancer, handOff: (to: number, fd: number, uid: string) => post({ t: "hboneHandoff", uid, fd, to, returned: false }) } } : {}),
};

/**
 * An inbound HBONE connection another worker accepted: served by this worker's proxy of its pod.
 * The fd is this worker's from here on: the main thread is told first, and nothing below can
 * end the thread before the fd is wrapped, closed or posted back.
 */
function adoptHbone(msg: Extract<ToWorker, { t: "hboneHandoff" }>): void {
  post({ t: "hboneHandoffTaken", id: msg.id });
  if (balancer === undefined) return closeQuietly(msg.fd);
  const proxy = pods.get(msg.uid);
  // Our own connection back (its receiver lacked the pod): served here, or closed if the pod left.
  if (msg.returned) {
    if (proxy?.adoptHbone(msg.fd, () => balancer.keep()) !== true) closeQuietly(msg.fd);
    return;
  }
  if (proxy?.adoptHbone(msg.fd, () => balancer.adopted()) === true) return;
  // Not here (yet): a pod is added to the workers one after another. Back to the accepting one.
  balancer.refused();
  post({ t: "hboneHandoff", uid: msg.uid, fd: msg.fd, to: msg.from, returned: true });
}

function closeQuietly(fd: number): void {
  try {
    closeFd(fd);
  } catch {
    // Already gone.
  }
}

/**
 * A new snapshot: open inbound connections are judged again (policies, a workload's
 * `authorizationPolicies` or its fail-closed state may have changed); denied ones are closed.
 */
function applyState(snapshot: StateSnapshot): void {
  if (!store.applySnapshot(snapshot)) return;
  let closed = 0;
  for (const p of pods.values()) closed += p.recheck();
  if (closed > 0) log.info({ version: snapshot.version, closed }, "state changed; open connections re-checked");
}

async function addPod(msg: Extract<ToWorker, { t: "addPod" }>): Promise<void> {
  const existing = pods.get(msg.pod.uid);
  if (existing !== undefined) {
    pods.delete(msg.pod.uid);
    await existing.close();
  }
  const proxy = new PodProxy(msg.pod, deps);
  pods.set(msg.pod.uid, proxy);
  try {
    const listeners = await proxy.start();
    post({ t: "reply", id: msg.id, ok: true, listeners });
  } catch (err) {
    if (pods.get(msg.pod.uid) === proxy) pods.delete(msg.pod.uid);
    post({ t: "reply", id: msg.id, ok: false, error: errorMessage(err) });
  }
}

async function removePod(msg: Extract<ToWorker, { t: "removePod" }>): Promise<void> {
  const proxy = pods.get(msg.uid);
  pods.delete(msg.uid);
  try {
    await proxy?.close();
    post({ t: "reply", id: msg.id, ok: true, listeners: [] });
  } catch (err) {
    post({ t: "reply", id: msg.id, ok: false, error: errorMessage(err) });
  }
}

async function drain(msg: Extract<ToWorker, { t: "drain" }>): Promise<void> {
  const all = [...pods.values()];
  for (const p of all) p.stopAccepting();
  const deadline = Date.now() + msg.deadlineMs;
  while (Date.now() < deadline && all.some((p) => p.activeConnections > 0)) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const left = all.reduce((n, p) => n + p.activeConnections, 0);
  if (left > 0) log.info({ connections: left }, "drain deadline reached; closing the remaining connections");
  for (const p of all) await p.close();
  pods.clear();
  telemetry.flush();
  post({ t: "reply", id: msg.id, ok: true, listeners: [] });
}

port.on("message", (msg: ToWorker) => {
  switch (msg.t) {
    case "state":
      applyState(msg.snapshot);
      return;
    case "logLevel":
      root.level = msg.level as LevelWithSilent;
      return;
    case "listConnections": {
      const connections: Record<string, OpenConnection[]> = {};
      for (const [uid, p] of pods) connections[uid] = p.connections();
      post({ t: "connections", id: msg.id, connections });
      return;
    }
    case "cert":
      certs.update(msg.cert);
      return;
    case "addPod":
      void addPod(msg);
      return;
    case "removePod":
      void removePod(msg);
      return;
    case "drain":
      void drain(msg);
      return;
    case "hboneHandoff":
      adoptHbone(msg);
      return;
    case "crash":
      // Debug hook: an uncaught exception, exactly like a bug would raise.
      setImmediate(() => {
        throw new Error(`worker ${init.settings.index} crashed on request (debug)`);
      });
      return;
  }
});

post({ t: "ready" });
