import { describe, expect, it } from "vitest";
import { PodLifecycle } from "../../src/agent/enroll/lifecycle.js";
import { handlePath } from "../../src/agent/netns/ops.js";
import { compareListeners, parseSsListeners, type ProxyProbe } from "../../src/agent/verify/kernel-listeners.js";
import { Verifier } from "../../src/agent/verify/verifier.js";
import { FakeOpener, FakeRedirector, FakeZds, StepLog, fakePod, recordingAnnotator } from "../fixtures/agent-fakes.js";

describe("periodic verifier", () => {
  async function setup(): Promise<{ log: StepLog; redirector: FakeRedirector; zds: FakeZds; lifecycle: PodLifecycle }> {
    const log = new StepLog();
    const redirector = new FakeRedirector(log);
    const zds = new FakeZds(log);
    const opener = new FakeOpener();
    opener.ids.set("/a", "A").set("/b", "B");
    const lifecycle = new PodLifecycle({ zds, redirector, opener, annotate: recordingAnnotator(log), addrsIn: async () => [] });
    await lifecycle.enroll(fakePod("u1"), { path: "/a" });
    await lifecycle.enroll(fakePod("u2"), { path: "/b" });
    log.clear();
    return { log, redirector, zds, lifecycle };
  }

  it("does nothing while everything is in place", async () => {
    const { log, redirector, zds, lifecycle } = await setup();
    const v = new Verifier({ lifecycle, redirector, zds, intervalMs: 0, proxies: { check: async () => ({ problems: [] }) } });
    expect(await v.runOnce()).toEqual([]);
    expect(log.steps).toEqual([]);
    expect(v.unhealthy()).toEqual([]);
  });

  it("re-applies rules that vanished and re-sends Add for a pod whose listeners are gone, counting each repair", async () => {
    const { log, redirector, zds, lifecycle } = await setup();
    redirector.applied.delete(handlePath(lifecycle.get("u1")!.netns));
    const u2 = handlePath(lifecycle.get("u2")!.netns);
    // The pod's kernel lists no ztunnel listener in u2 until ztunnel gets the pod again.
    const listening = new Set([handlePath(lifecycle.get("u1")!.netns)]);
    zds.onAdd = (uid) => uid === "u2" && listening.add(u2);
    const proxies: ProxyProbe = { check: async (p) => ({ problems: listening.has(p) ? [] : ["tcp/15001 missing"] }) };
    const counted: string[] = [];
    const gauge: number[] = [];
    const v = new Verifier({ lifecycle, redirector, zds, intervalMs: 0, proxies, onRepair: (k, uid) => counted.push(`${k} ${uid}`), onUnhealthy: (p) => gauge.push(p.length) });
    expect(await v.runOnce()).toEqual([
      { uid: "u1", kind: "rules" },
      { uid: "u2", kind: "proxies" },
    ]);
    expect(log.steps).toEqual(["rules-apply", "zds-add u2"]);
    expect(counted).toEqual(["rules u1", "proxies u2"]);
    // Repaired within the pass: nothing left unhealthy (the gauge went up while repairing, then back to 0).
    expect(v.unhealthy()).toEqual([]);
    expect(gauge).toEqual([1, 0]);
    log.clear();
    expect(await v.runOnce()).toEqual([]);
    expect(log.steps).toEqual([]);
  });

  it("a pod that cannot be repaired stays listed (readiness, gauge) until a pass finds it whole", async () => {
    const { zds, redirector, lifecycle } = await setup();
    let up = false;
    const u2 = handlePath(lifecycle.get("u2")!.netns);
    const proxies: ProxyProbe = { check: async (p) => ({ problems: p === u2 && !up ? ["tcp/15008 not marked 0x539"] : [] }) };
    const v = new Verifier({ lifecycle, redirector, zds, intervalMs: 0, proxies });
    await v.runOnce();
    expect(v.unhealthy()).toEqual([{ uid: "u2", pod: "mesh/pod-u2", problems: ["ztunnel listener tcp/15008 not marked 0x539 after re-creating the pod"] }]);
    zds.down = true; // ztunnel gone: the repair itself fails, the pod stays listed
    await v.runOnce();
    expect(v.unhealthy()).toHaveLength(1);
    expect(v.unhealthy()[0]!.problems.join()).toMatch(/repair failed: no ztunnel connection/);
    zds.down = false;
    up = true;
    await v.runOnce();
    expect(v.unhealthy()).toEqual([]);
  });

  it("listeners still missing after an Add (ztunnel thinks the pod runs): the pod is re-created in ztunnel (Del, Add)", async () => {
    const { log, zds, redirector, lifecycle } = await setup();
    const u1 = handlePath(lifecycle.get("u1")!.netns);
    let rebuilt = false;
    const proxies: ProxyProbe = { check: async (p) => ({ problems: p === u1 && !rebuilt ? ["tcp/15006 missing"] : [] }) };
    zds.onAdd = (uid) => {
      // Like ztunnel: an Add of a running pod changes nothing; after a Del it builds the pod again.
      if (uid === "u1" && !zds.added.has("u1-was-deleted")) return;
      rebuilt = true;
    };
    const del = zds.podDeleted.bind(zds);
    zds.podDeleted = async (uid) => {
      zds.added.set(`${uid}-was-deleted`, "");
      await del(uid);
    };
    const v = new Verifier({ lifecycle, redirector, zds, intervalMs: 0, proxies });
    expect(await v.runOnce()).toEqual([{ uid: "u1", kind: "proxies" }]);
    expect(log.steps).toEqual(["zds-add u1", "zds-del u1", "zds-add u1"]);
    expect(v.unhealthy()).toEqual([]);
  });

  it("cannot tell (ss failed) is not a problem: no repair on a guess", async () => {
    const { log, redirector, zds, lifecycle } = await setup();
    const v = new Verifier({ lifecycle, redirector, zds, intervalMs: 0, proxies: { check: async () => undefined } });
    expect(await v.runOnce()).toEqual([]);
    expect(log.steps).toEqual([]);
  });

  it("runs on its interval until stopped; a failing repair is retried on the next pass", async () => {
    const { redirector, zds, lifecycle } = await setup();
    let runs = 0;
    redirector.applied.clear();
    redirector.failApply = true;
    const v = new Verifier({ lifecycle, redirector, zds, intervalMs: 20, onRun: () => runs++ });
    v.start();
    await expect.poll(() => runs, { timeout: 2000 }).toBeGreaterThanOrEqual(2);
    redirector.failApply = false;
    await expect.poll(() => redirector.applied.size, { timeout: 2000 }).toBe(2);
    await v.stop();
    const after = runs;
    await new Promise((r) => setTimeout(r, 60));
    expect(runs).toBe(after);
  });
});


describe("ztunnel's listeners as the pod's kernel lists them", () => {
  const TCP = `LISTEN 0      128    0.0.0.0:15001 0.0.0.0:* ino:528094 sk:107e fwmark:0x539 cgroup:unreachable:1 <->
LISTEN 0      128          *:15006       *:* ino:528095 sk:107f fwmark:0x539 cgroup:unreachable:1 v6only:0 <->
LISTEN 0      128          *:15008       *:* ino:528096 sk:1080 cgroup:unreachable:1 v6only:0 <->
LISTEN 0      128    0.0.0.0:8080 0.0.0.0:* ino:528097 sk:1081 cgroup:unreachable:1 <->
`;
  const UDP = "UNCONN 0      0      127.0.0.1:15053 0.0.0.0:* ino:528096 sk:2a0 fwmark:0x539 cgroup:unreachable:1 <->\n";
  it("parses ss -H{t,u}lne: port and fwmark", () => {
    expect(parseSsListeners(TCP)).toEqual([
      { port: 15001, mark: 0x539 },
      { port: 15006, mark: 0x539 },
      { port: 15008, mark: undefined },
      { port: 8080, mark: undefined },
    ]);
  });
  it("reports a missing listener and one without ztunnel's mark", () => {
    const want = [15001, 15006, 15008].map((port) => ({ proto: "tcp" as const, port }));
    expect(compareListeners(want, parseSsListeners(TCP), [], 0x539, 0xfff)).toEqual(["tcp/15008 not marked 0x539"]);
    expect(compareListeners([...want, { proto: "udp", port: 15053 }], parseSsListeners(TCP).slice(0, 1), parseSsListeners(UDP), 0x539, 0xfff)).toEqual([
      "tcp/15006 missing",
      "tcp/15008 missing",
    ]);
    // Only the mask's bits count (the connmark shares the upper bits in some setups).
    expect(compareListeners([{ proto: "udp", port: 15053 }], [], parseSsListeners(UDP.replace("0x539", "0x10539")), 0x539, 0xfff)).toEqual([]);
  });
});
