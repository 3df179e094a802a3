import { describe, expect, it } from "vitest";
import { PodLifecycle } from "../../src/agent/enroll/lifecycle.js";
import { handlePath } from "../../src/agent/netns/ops.js";
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
    const v = new Verifier({ lifecycle, redirector, zds, intervalMs: 0, ztunnel: { hasPod: async () => true } });
    expect(await v.runOnce()).toEqual([]);
    expect(log.steps).toEqual([]);
  });

  it("re-applies rules that vanished and re-sends Add for a pod ztunnel lost, counting each repair", async () => {
    const { log, redirector, zds, lifecycle } = await setup();
    redirector.applied.delete(handlePath(lifecycle.get("u1")!.netns));
    const counted: string[] = [];
    const v = new Verifier({
      lifecycle,
      redirector,
      zds,
      intervalMs: 0,
      ztunnel: { hasPod: async (uid) => (uid === "u2" ? false : uid === "u1" ? true : undefined) },
      onRepair: (k, uid) => counted.push(`${k} ${uid}`),
    });
    expect(await v.runOnce()).toEqual([
      { uid: "u1", kind: "rules" },
      { uid: "u2", kind: "ztunnel" },
    ]);
    expect(log.steps).toEqual(["rules-apply", "zds-add u2"]);
    expect(counted).toEqual(["rules u1", "ztunnel u2"]);
    expect(await v.runOnce()).toEqual([{ uid: "u2", kind: "ztunnel" }]); // the fake ztunnel keeps saying no
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

describe("ztunnel admin view", () => {
  it("reads workloadState from /config_dump: Up with listeners = has it; absent or Failed = lost; Pending or unreachable = cannot tell", async () => {
    const { createServer } = await import("node:http");
    const { AdminZtunnelView } = await import("../../src/agent/verify/ztunnel-admin.js");
    let dump: unknown = {
      zds: { connected: true },
      workloadState: {
        up: { state: "Up", listeners: [{ port: 15001 }] },
        bare: { state: "Up", listeners: [] },
        starting: { state: "Pending", listeners: [] },
        broken: { state: "Failed", listeners: [] },
      },
    };
    let hits = 0;
    const srv = createServer((req, res) => {
      hits++;
      if (req.url !== "/config_dump") return void res.writeHead(404).end();
      res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(dump));
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    try {
      const view = new AdminZtunnelView(`http://127.0.0.1:${port}`, { cacheMs: 0 });
      expect(await view.hasPod("up")).toBe(true);
      expect(await view.hasPod("bare")).toBe(false);
      expect(await view.hasPod("starting")).toBeUndefined();
      expect(await view.hasPod("broken")).toBe(false);
      expect(await view.hasPod("gone")).toBe(false);
      dump = { zds: { connected: false }, workloadState: {} };
      expect(await view.hasPod("gone")).toBeUndefined();
      const cached = new AdminZtunnelView(`http://127.0.0.1:${port}`, { cacheMs: 60_000 });
      const before = hits;
      await cached.hasPod("a");
      await cached.hasPod("b");
      expect(hits - before).toBe(1);
      expect(await new AdminZtunnelView("http://127.0.0.1:1", { timeoutMs: 500 }).hasPod("up")).toBeUndefined();
    } finally {
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });
});
