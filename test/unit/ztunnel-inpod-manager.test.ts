import { afterEach, describe, expect, it } from "vitest";
import { logger } from "../../src/shared/log.js";
import { WorkloadState } from "../../src/zds/workload-state.js";
import { pendingPods } from "../../src/ztunnel/inpod/pod-status.js";
import { InPodManager, type PodWorkers } from "../../src/ztunnel/inpod/manager.js";
import type { WorkerReply, WorkerRequest } from "../../src/ztunnel/inpod/worker-pool.js";
import { parseLocalConfig } from "../../src/ztunnel/state/local-config.js";
import { WorkloadStore } from "../../src/ztunnel/state/store.js";
import { CertManager } from "../../src/ztunnel/tls/cert-manager.js";
import type { Identity } from "../../src/ztunnel/tls/identity.js";
import type { ListenerInfo } from "../../src/ztunnel/worker/messages.js";
import { testCa } from "../fixtures/ztunnel-pki.js";

// The pod manager against fake workers: all-or-nothing adds, rollback, re-add on a replaced
// worker, and (through the ZDS workload state that owns each pod's status) what readiness sees.

type Script = (index: number, req: WorkerRequest) => WorkerReply | undefined;

class FakeWorkers implements PodWorkers {
  readonly log: string[] = [];
  readonly generations: number[];
  /** Per worker: uids with listeners. */
  readonly bound: Set<string>[];
  script: Script = () => undefined;
  private replaced: ((index: number, generation: number) => void) | undefined;
  readonly certs: string[] = [];
  /** The IPs of every addPod request, in order ("uid@worker ip,ip"). */
  readonly ips: string[] = [];

  constructor(readonly size: number) {
    this.generations = Array.from({ length: size }, () => 1);
    this.bound = Array.from({ length: size }, () => new Set<string>());
  }

  async request(index: number, req: WorkerRequest): Promise<WorkerReply & { generation: number }> {
    await Promise.resolve();
    const generation = this.generations[index]!;
    const scripted = this.script(index, req);
    const set = this.bound[index]!;
    if (req.t === "addPod") {
      this.log.push(`add ${req.pod.uid}@${index} fd=${req.pod.netnsFd}`);
      this.ips.push(`${req.pod.uid}@${index} ${req.pod.ips.join(",")}`);
      if (scripted !== undefined && !scripted.ok) return { ...scripted, generation };
      set.add(req.pod.uid);
      const listener: ListenerInfo = { address: "::", port: 15008, protocol: "HBONE", role: "inbound-hbone", worker: index, mark: 1337 };
      return { ok: true, listeners: [listener], generation };
    }
    if (req.t === "removePod") {
      this.log.push(`remove ${req.uid}@${index}`);
      set.delete(req.uid);
    }
    return { ok: true, listeners: [], generation };
  }

  broadcast(msg: { t: "cert" }): void {
    this.certs.push(msg.t);
  }

  onReplaced(cb: (index: number, generation: number) => void): void {
    this.replaced = cb;
  }

  /** Simulates a crashed worker coming back empty. */
  replace(index: number): void {
    this.generations[index]!++;
    this.bound[index]!.clear();
    this.replaced?.(index, this.generations[index]!);
  }
}

const STATE = `
workloads:
  - uid: pod-a
    name: a
    namespace: ns1
    serviceAccount: sa-a
    workloadIps: ["10.0.0.1"]
    protocol: HBONE
  - uid: other-uid
    name: b
    namespace: ns1
    workloadIps: ["10.0.0.2"]
    protocol: HBONE
`;

const netns = (fd: number) => ({ usableFd: () => fd });
/** A netns as the ZDS workload state holds it (identity for replace checks, close). */
const ownedNetns = (fd: number) => ({ fd, usableFd: () => fd, identity: () => ({ dev: 1n, ino: BigInt(fd) }), closed: false, close() { this.closed = true; } });
const info = (name: string) => ({ name, namespace: "ns1", serviceAccount: `sa-${name}` });

async function setup(workers = 2, retryIntervalMs = 20) {
  const store = new WorkloadStore();
  store.replace(parseLocalConfig(STATE), "test");
  const certs = new CertManager(await testCa());
  const pool = new FakeWorkers(workers);
  const manager = new InPodManager({ pool, store, certs, log: logger("test"), trustDomain: "cluster.local" });
  // The one owner of each pod's status and retries; the manager reports to it.
  const state = new WorkloadState<ReturnType<typeof ownedNetns>>(manager, retryIntervalMs, logger("test"));
  return { store, certs, pool, manager, state };
}

async function until(cond: () => boolean, ms = 2_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met");
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("InPodManager", () => {
  let certs: CertManager | undefined;
  afterEach(() => certs?.close());

  it("an Add resolves only after every worker has its listeners, with the pod's identity and the main thread's fd", async () => {
    const env = await setup(3);
    certs = env.certs;
    await env.manager.start("pod-a", info("a"), netns(42));
    expect(env.pool.bound.map((s) => s.has("pod-a"))).toEqual([true, true, true]);
    expect(env.pool.log.filter((l) => l.startsWith("add"))).toEqual(["add pod-a@0 fd=42", "add pod-a@1 fd=42", "add pod-a@2 fd=42"]);
    const [status] = env.manager.placements();
    expect(status).toMatchObject({ uid: "pod-a", identity: "spiffe://cluster.local/ns/ns1/sa/sa-a" });
    expect(status!.listeners.map((l) => l.worker)).toEqual([0, 1, 2]);
    expect(env.certs.list().map((c) => c.identity.serviceAccount)).toEqual(["sa-a"]);
  });

  it("finds the workload by namespace/name when the ZDS uid differs from the state's uid", async () => {
    const env = await setup();
    certs = env.certs;
    await env.manager.start("k8s-uid-123", info("b"), netns(7));
    expect(env.manager.placements()[0]).toMatchObject({ uid: "k8s-uid-123", identity: "spiffe://cluster.local/ns/ns1/sa/sa-b" });
  });

  it("a failure on one worker fails the Add and the other workers close their listeners", async () => {
    const env = await setup(2);
    certs = env.certs;
    env.pool.script = (i, req) => (req.t === "addPod" && i === 1 ? { ok: false, error: "bind 15008: EADDRINUSE" } : undefined);
    await expect(env.manager.start("pod-a", info("a"), netns(3))).rejects.toThrow(/worker 1: bind 15008: EADDRINUSE/);
    expect(env.pool.bound.map((s) => s.size)).toEqual([0, 0]);
    expect(env.pool.log).toContain("remove pod-a@0");
    expect(env.manager.placements()).toEqual([]);
    // ZDS retries the Add later; once the port is free it succeeds.
    env.pool.script = () => undefined;
    await env.manager.start("pod-a", info("a"), netns(3));
    expect(env.pool.bound.map((s) => s.has("pod-a"))).toEqual([true, true]);
  });

  it("a pod the state does not have yet starts from its WorkloadInfo, without IPs, and is rebuilt once the state has it", async () => {
    // istiod publishes a pod's workload only after the pod has an IP, i.e. after the CNI ADD
    // that sent this Add: refusing the Add would keep the pod from ever starting.
    const env = await setup();
    certs = env.certs;
    await env.manager.start("k8s-uid-c", info("c"), netns(5));
    expect(env.manager.placement("k8s-uid-c")).toMatchObject({ identity: "spiffe://cluster.local/ns/ns1/sa/sa-c" });
    expect(env.pool.ips).toEqual(["k8s-uid-c@0 ", "k8s-uid-c@1 "]);
    await env.manager.refresh(); // still not in the state: keeps serving as it is
    expect(env.pool.log.filter((l) => l.startsWith("remove"))).toEqual([]);
    env.store.replace(parseLocalConfig(`${STATE}  - uid: xds-uid-c
    name: c
    namespace: ns1
    serviceAccount: sa-c
    workloadIps: ["10.0.0.3"]
    protocol: HBONE
`), "test");
    await env.manager.refresh();
    expect(env.pool.log.filter((l) => l.startsWith("remove"))).toEqual(["remove k8s-uid-c@0", "remove k8s-uid-c@1"]);
    expect(env.pool.ips.slice(2)).toEqual(["k8s-uid-c@0 10.0.0.3", "k8s-uid-c@1 10.0.0.3"]);
    expect(env.pool.bound.map((s) => s.has("k8s-uid-c"))).toEqual([true, true]);
  });

  it("a refresh keeps serving a pod that left the state (even one enrolled without a service account) and goes on to the others", async () => {
    const env = await setup();
    certs = env.certs;
    await env.manager.start("other-uid", { name: "b", namespace: "ns1", serviceAccount: "" }, netns(4));
    await env.manager.start("pod-a", info("a"), netns(3));
    // b leaves the state and a moves, in one change.
    const next = STATE.slice(0, STATE.indexOf("  - uid: other-uid")).replace('"10.0.0.1"', '"10.0.0.11"');
    env.store.replace(parseLocalConfig(next), "test");
    await env.manager.refresh();
    expect(env.pool.log.filter((l) => l.startsWith("remove"))).toEqual(["remove pod-a@0", "remove pod-a@1"]);
    expect(env.pool.bound.map((s) => [s.has("other-uid"), s.has("pod-a")])).toEqual([
      [true, true],
      [true, true],
    ]);
  });

  it("a pod the state does not have, whose WorkloadInfo names no service account, fails closed with a message naming it", async () => {
    const env = await setup();
    certs = env.certs;
    await expect(env.manager.start("zzz", { name: "ghost", namespace: "ns1", serviceAccount: "" }, netns(3))).rejects.toThrow(
      /ns1\/ghost \(uid zzz\) is not in the workload state and its ZDS WorkloadInfo names no service account/,
    );
    expect(env.pool.log).toEqual([]);
    expect(env.manager.placements()).toEqual([]);
  });

  it("stop removes the pod from every worker and forgets its certificate", async () => {
    const env = await setup();
    certs = env.certs;
    await env.manager.start("pod-a", info("a"), netns(3));
    await env.manager.stop("pod-a");
    expect(env.pool.bound.map((s) => s.size)).toEqual([0, 0]);
    expect(env.manager.placements()).toEqual([]);
    expect(env.certs.list()).toEqual([]);
  });

  it("a replaced worker gets every Up pod again", async () => {
    const env = await setup();
    certs = env.certs;
    expect(await env.state.add("pod-a", info("a"), ownedNetns(3))).toBe("");
    expect(await env.state.add("other-uid", info("b"), ownedNetns(4))).toBe("");
    env.pool.replace(1);
    await until(() => env.pool.bound[1]!.size === 2);
    expect(env.state.readiness().pendingUids).toEqual([]);
    expect(env.state.counts()).toEqual({ running: 2, pending: 0 });
  });

  it("a failed re-add turns the pod Pending (named for readiness, once), removes it everywhere, and a retry brings it back", async () => {
    const env = await setup(2, 30);
    certs = env.certs;
    expect(await env.state.add("pod-a", info("a"), ownedNetns(3))).toBe("");
    expect(await env.state.snapshotSent()).toBe("");
    let failures = 1;
    env.pool.script = (_i, req) => (req.t === "addPod" && failures-- > 0 ? { ok: false, error: "boom" } : undefined);
    env.pool.replace(1);
    await until(() => env.state.readiness().pendingUids.length === 1);
    expect(env.state.status("pod-a")).toMatchObject({ uid: "pod-a", pod: "ns1/a", status: "starting" });
    expect(env.state.status("pod-a")!.lastError).toMatch(/boom/);
    // Nothing is left bound, and the manager holds nothing the status owner does not know of.
    expect(env.pool.bound.map((s) => s.has("pod-a"))).toEqual([false, false]);
    expect(env.manager.placements()).toEqual([]);
    // The gauges read the same status without describing every pod.
    expect(env.state.counts()).toEqual({ running: 0, pending: 1 });
    expect(env.state.status("nope")).toBeUndefined();
    // Readiness names the pod exactly once (one owner, one line).
    const lines = pendingPods(env.state.readiness(), env.state.workloads());
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^pod pod-a \(ns1\/a\) starting: .*boom/);
    await until(() => env.state.readiness().ready);
    expect(env.state.counts()).toEqual({ running: 1, pending: 0 });
    expect(env.state.status("pod-a")).toEqual(env.state.workloads()[0]);
    expect(env.pool.bound.map((s) => s.has("pod-a"))).toEqual([true, true]);
    expect(env.manager.placement("pod-a")?.listeners).toHaveLength(2);
  });

  it("a pod never appears twice in readiness: a failed Add and a lost pod are each one line", async () => {
    const env = await setup(2, 10_000);
    certs = env.certs;
    expect(await env.state.add("pod-a", info("a"), ownedNetns(3))).toBe("");
    env.pool.script = (i, req) => (req.t === "addPod" && i === 1 ? { ok: false, error: "bind 15008: EADDRINUSE" } : undefined);
    expect(await env.state.add("other-uid", info("b"), ownedNetns(4))).toMatch(/EADDRINUSE/);
    expect(await env.state.snapshotSent()).toBe("");
    env.pool.replace(1); // pod-a's re-add fails too: lost
    await until(() => env.state.readiness().pendingUids.length === 2);
    const lines = pendingPods(env.state.readiness(), env.state.workloads());
    expect(lines).toHaveLength(2);
    expect(lines.filter((l) => l.startsWith("pod pod-a "))).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith("pod other-uid "))).toHaveLength(1);
    await env.state.close();
  });

  it("a state change that moves a pod's IPs rebuilds its listeners with the new IPs", async () => {
    const env = await setup();
    certs = env.certs;
    await env.manager.start("pod-a", info("a"), netns(3));
    await env.manager.refresh(); // nothing changed: nothing happens
    expect(env.pool.log.filter((l) => l.startsWith("remove"))).toEqual([]);
    env.store.replace(parseLocalConfig(STATE.replace('"10.0.0.1"', '"10.0.0.11"')), "test");
    await env.manager.refresh();
    expect(env.pool.log.filter((l) => l.startsWith("remove"))).toEqual(["remove pod-a@0", "remove pod-a@1"]);
    expect(env.pool.bound.map((s) => s.has("pod-a"))).toEqual([true, true]);
    expect(env.manager.placement("pod-a")?.listeners).toHaveLength(2);
  });

  it("a renewed certificate is broadcast to the workers until the identity's last pod is gone", async () => {
    const store = new WorkloadStore();
    store.replace(parseLocalConfig(STATE), "test");
    let serial = 0;
    // Short-lived fake certificates: CertManager renews at half life (100 ms here).
    const issuer = {
      rootPem: "root",
      issue: async (identity: Identity) => {
        const now = Date.now();
        return { identity, certPem: `cert-${++serial}`, keyPem: "key", rootPem: "root", notBefore: new Date(now), notAfter: new Date(now + 200) };
      },
    };
    const certManager = new CertManager(issuer);
    certs = certManager;
    const pool = new FakeWorkers(2);
    const manager = new InPodManager({ pool, store, certs: certManager, log: logger("test"), trustDomain: "cluster.local" });
    await manager.start("pod-a", info("a"), netns(3));
    // Renewals come at half life but never sooner than 1 s apart (CertManager): wait for two.
    await until(() => pool.certs.length >= 2, 10_000);
    await manager.stop("pod-a");
    const after = pool.certs.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(pool.certs.length).toBe(after);
  });

  it("after markShutdown, stop only forgets (the workers are gone)", async () => {
    const env = await setup();
    certs = env.certs;
    await env.manager.start("pod-a", info("a"), netns(3));
    env.manager.markShutdown();
    const before = env.pool.log.length;
    await env.manager.stop("pod-a");
    expect(env.pool.log.length).toBe(before);
    await expect(env.manager.start("other-uid", info("b"), netns(4))).rejects.toThrow(/shutting down/);
  });
});
