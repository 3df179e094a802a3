import { beforeEach, describe, expect, it } from "vitest";
import { PodLifecycle, ZdsPendingError } from "../../src/agent/enroll/lifecycle.js";
import { FakeHost, FakeOpener, FakeRedirector, FakeZds, StepLog, fakePod, recordingAnnotator } from "../fixtures/agent-fakes.js";

describe("pod lifecycle (Istio's order)", () => {
  let log: StepLog;
  let zds: FakeZds;
  let redirector: FakeRedirector;
  let host: FakeHost;
  let opener: FakeOpener;
  let stored: Map<string, string>;
  let lc: PodLifecycle;

  beforeEach(() => {
    log = new StepLog();
    zds = new FakeZds(log);
    redirector = new FakeRedirector(log);
    host = new FakeHost(log);
    opener = new FakeOpener();
    opener.ids.set("/run/netns/a", "A");
    opener.ids.set("/run/netns/a2", "A2");
    stored = new Map();
    lc = new PodLifecycle({
      zds,
      redirector,
      host,
      opener,
      store: { set: async (u, p) => void stored.set(u, p), delete: async (u) => void stored.delete(u) },
      annotate: recordingAnnotator(log),
      addrsIn: async () => ["10.0.0.7"],
    });
  });

  it("add: netns → rules → ZDS Add → ipset → annotate enabled; the path is persisted", async () => {
    const e = await lc.enroll(fakePod("u1"), { path: "/run/netns/a" }, ["10.0.0.5"]);
    expect(log.steps).toEqual(["rules-apply", "zds-add u1", "ipset-add 10.0.0.5", "annotate enabled"]);
    expect(e.state).toBe("enabled");
    expect(stored.get("u1")).toBe("/run/netns/a");
    expect(lc.list()).toEqual([{ uid: "u1", info: { name: "pod-u1", namespace: "mesh", serviceAccount: "sa" }, netns: e.netns }]);
  });

  it("a pod's DNS capture annotation reaches its rules, and changing it on a running pod re-applies them", async () => {
    const optedOut = fakePod("u1", { annotations: { "ambient.istio.io/dns-capture": "false" } });
    await lc.enroll(optedOut, { path: "/run/netns/a" });
    expect(log.steps[0]).toBe("rules-apply dns=false");
    log.clear();
    // The same pod again (a reconcile) with the annotation gone: capture back on, nothing else.
    await lc.enroll(fakePod("u1"), { path: "/run/netns/a" });
    expect(log.steps).toEqual(["rules-apply"]);
    log.clear();
    await lc.enroll(fakePod("u1"), { path: "/run/netns/a" });
    expect(log.steps).toEqual([]);
  });

  it("IPs come from the event, else the source, else the netns itself", async () => {
    await lc.enroll(fakePod("u1", { ips: ["10.0.0.6"] }), { path: "/run/netns/a" });
    await lc.enroll(fakePod("u2"), { path: "/run/netns/a2" });
    expect(lc.get("u1")?.ips).toEqual(["10.0.0.6"]);
    expect(lc.get("u2")?.ips).toEqual(["10.0.0.7"]);
  });

  it("enrolling again with the same netns changes nothing and leaks no handle", async () => {
    await lc.enroll(fakePod("u1"), { path: "/run/netns/a" });
    log.clear();
    await lc.enroll(fakePod("u1"), { path: "/run/netns/a" });
    expect(log.steps).toEqual([]);
    expect(opener.openCount()).toBe(1);
  });

  it("a ZDS failure leaves the pod pending (rules in place, in the snapshot), then a retry finishes it", async () => {
    zds.down = true;
    await expect(lc.enroll(fakePod("u1"), { path: "/run/netns/a" })).rejects.toBeInstanceOf(ZdsPendingError);
    expect(log.steps).toEqual(["rules-apply", "zds-add-fail u1", "annotate pending"]);
    expect(lc.get("u1")?.state).toBe("pending");
    expect(lc.list().map((p) => p.uid)).toEqual(["u1"]);
    expect(host.ips.size).toBe(0);
    zds.down = false;
    log.clear();
    const cur = lc.get("u1")!;
    await lc.enroll(fakePod("u1"), { ref: cur.netns, origin: cur.origin });
    expect(log.steps).toEqual(["rules-apply", "zds-add u1", "ipset-add 10.0.0.7", "annotate enabled"]);
    expect(lc.get("u1")?.state).toBe("enabled");
  });

  it("rules that fail to apply leave nothing behind", async () => {
    redirector.failApply = true;
    await expect(lc.enroll(fakePod("u1"), { path: "/run/netns/a" })).rejects.toThrow(/iptables-restore/);
    expect(lc.get("u1")).toBeUndefined();
    expect(opener.openCount()).toBe(0);
    expect(zds.added.size).toBe(0);
  });

  it("remove: ipset → ZDS Del → rules removed → annotation removed; handle closed, path forgotten", async () => {
    const e = await lc.enroll(fakePod("u1"), { path: "/run/netns/a" }, ["10.0.0.5"]);
    log.clear();
    await lc.unenroll("u1", { podGone: false });
    expect(log.steps).toEqual(["ipset-del 10.0.0.5", "zds-del u1", "rules-remove", "annotate removed"]);
    expect(e.netns.closed).toBe(true);
    expect(stored.has("u1")).toBe(false);
    expect(lc.get("u1")).toBeUndefined();
    log.clear();
    await lc.unenroll("u1", { podGone: false });
    expect(log.steps).toEqual([]);
  });

  it("remove of a pod that is gone skips its rules and annotation", async () => {
    await lc.enroll(fakePod("u1"), { path: "/run/netns/a" }, ["10.0.0.5"]);
    log.clear();
    await lc.unenroll("u1", { podGone: true });
    expect(log.steps).toEqual(["ipset-del 10.0.0.5", "zds-del u1"]);
  });

  it("a new sandbox (other netns) for the same uid moves the pod there", async () => {
    const first = await lc.enroll(fakePod("u1"), { path: "/run/netns/a" }, ["10.0.0.5"]);
    log.clear();
    const second = await lc.enroll(fakePod("u1"), { path: "/run/netns/a2" }, ["10.0.0.8"]);
    expect(first.netns.closed).toBe(true);
    expect(second.netns.closed).toBe(false);
    expect(log.steps).toEqual(["ipset-del 10.0.0.5", "rules-apply", "zds-add u1", "ipset-add 10.0.0.8", "annotate enabled"]);
    expect(stored.get("u1")).toBe("/run/netns/a2");
  });

  it("operations on one pod are serialised", async () => {
    const a = lc.enroll(fakePod("u1"), { path: "/run/netns/a" });
    const b = lc.unenroll("u1", { podGone: false });
    const c = lc.enroll(fakePod("u1"), { path: "/run/netns/a" });
    await Promise.all([a, b, c]);
    expect(log.steps.filter((s) => s.startsWith("zds"))).toEqual(["zds-add u1", "zds-del u1", "zds-add u1"]);
    expect(lc.get("u1")?.state).toBe("enabled");
  });
});

describe("pod lifecycle while ZDS is deferred (agent start-up)", () => {
  it("stops at pending without trying ztunnel or touching the annotation; finishing later enables it", async () => {
    const log = new StepLog();
    const opener = new FakeOpener();
    opener.ids.set("/a", "A");
    let deferred = true;
    const lc = new PodLifecycle({
      zds: new FakeZds(log),
      redirector: new FakeRedirector(log),
      opener,
      annotate: recordingAnnotator(log),
      addrsIn: async () => ["10.0.0.7"],
      zdsDeferred: () => deferred,
    });
    const e = await lc.enroll(fakePod("u1"), { path: "/a" });
    expect(e.state).toBe("pending");
    expect(log.steps).toEqual(["rules-apply"]);
    expect(lc.list().map((p) => p.uid)).toEqual(["u1"]);
    deferred = false;
    await lc.finishPending(fakePod("u1"));
    expect(log.steps).toEqual(["rules-apply", "rules-apply", "zds-add u1", "annotate enabled"]);
    expect(lc.get("u1")?.state).toBe("enabled");
  });
});
