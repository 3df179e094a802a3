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
