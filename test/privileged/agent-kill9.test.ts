import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { DemoRun, RunPod } from "../../src/demo/run.js";
import { describePrivileged } from "../harness/privileged.js";

// Issue 16: kill -9 of the node agent under traffic causes no rule or proxy churn. The 2-node
// demo mesh for real (agents and ztunnels as processes in the node netns, pods enrolled through
// our CNI plugin); while pods talk across and within nodes, both agents get SIGKILL, stay dead
// for a while, and start again. The in-pod rules must be untouched (same iptables-save, counters
// only growing), ztunnel must never stop a proxy, and every connection (also during the gap)
// must succeed. The restarted agents must really have reconnected (a snapshot with every pod
// kept), else the test proves nothing.

const ROOT = mkdtempSync(join(tmpdir(), "agent-kill9-"));
process.env.AMBIENT_DEMO_ROOT = ROOT;

// The demo's code resolves the agent, ztunnel and plugin next to itself: run the built copy.
const DIST_DEMO = join(import.meta.dirname, "..", "..", "dist", "src", "demo");

const GAP_MS = 3_000;
const MAX_CONNECTIONS_PER_LOOP = 5_000;

interface Loop {
  ok: number;
  okDuringGap: number;
  failures: string[];
  done: Promise<void>;
}

describePrivileged("node agent: kill -9 under traffic, no rule or proxy churn", () => {
  let run: DemoRun | undefined;
  let stop = false;
  let inGap = false;
  const loops: Loop[] = [];

  const nodeLog = (n: number, what: string): string => join(run!.runDir, `node${n}`, `${what}.log`);
  const logLines = (n: number, what: string, msg: string): number => readFileSync(nodeLog(n, what), "utf8").split("\n").filter((l) => l.includes(`"msg":"${msg}"`)).length;

  async function metric(n: number, name: string): Promise<number> {
    const { httpCall } = await import("../../src/cli/http.js");
    const r = await httpCall({ url: "http://127.0.0.1:15020", netns: run!.nodeNs(n) }, "/metrics", "GET", 2_000);
    expect(r.status).toBe(200);
    const m = new RegExp(`^${name} (\\d+)$`, "m").exec(r.body);
    if (m === null) throw new Error(`no ${name} in node${n}'s ztunnel metrics`);
    return Number(m[1]);
  }

  function podNs(p: RunPod): string {
    const info = run!.topology.pods.find((x) => x.netnsPath === p.netnsPath);
    if (info === undefined) throw new Error(`no netns for ${p.name}`);
    return info.ns;
  }

  /** The pod's tables with counters: [rules without counters, packets per redirect rule]. */
  async function rules(p: RunPod): Promise<{ text: string; redirectPackets: number[] }> {
    const out = (await run!.topology.exec(podNs(p), "iptables-save", ["-c"])).stdout;
    const lines = out.split("\n").filter((l) => !l.startsWith("#") && l !== "");
    const redirectPackets: number[] = [];
    const text = lines
      .map((l) => {
        const m = /^\[(\d+):\d+\] (.*)$/.exec(l);
        if (m === null) return l.replace(/ \[\d+:\d+\]$/, "");
        if (m[2]!.includes("-j REDIRECT")) redirectPackets.push(Number(m[1]));
        return m[2]!;
      })
      .join("\n");
    return { text, redirectPackets };
  }

  function startLoop(from: RunPod, to: RunPod, bytes: number): Loop {
    const loop: Loop = { ok: 0, okDuringGap: 0, failures: [], done: Promise.resolve() };
    loop.done = (async () => {
      for (let i = 0; i < MAX_CONNECTIONS_PER_LOOP && !stop; i++) {
        const gapAtStart = inGap;
        try {
          const t = await run!.apps.transfer(from.netnsPath, from.name, to.name, to.ip, bytes, { timeoutMs: 5_000 });
          if (!t.reply.startsWith(`demo/${to.name} received ${bytes} bytes`)) loop.failures.push(`${from.name} → ${to.name}: ${t.reply}`);
          else {
            loop.ok++;
            if (gapAtStart && inGap) loop.okDuringGap++;
          }
        } catch (err) {
          loop.failures.push(`${from.name} → ${to.name}: ${String(err)}`);
        }
      }
    })();
    loops.push(loop);
    return loop;
  }

  beforeAll(async () => {
    const { DemoRun: Run } = (await import(join(DIST_DEMO, "run.js"))) as typeof import("../../src/demo/run.js");
    run = new Run("harness");
    await run.createTopology();
    await run.writeConfig();
    await Promise.all([0, 1].map(async (n) => await run!.startNode(n)));
    await run.enroll();
    for (const p of run.pods) await run.startPod(p);
    await run.waitPodsUp();
  }, 120_000);

  afterAll(async () => {
    stop = true;
    await Promise.allSettled(loops.map((l) => l.done));
    try {
      await run?.destroy();
    } finally {
      rmSync(ROOT, { recursive: true, force: true });
    }
  }, 60_000);

  it("SIGKILL of both agents and a restart: rules unchanged, no proxy stopped, every connection served", async () => {
    const r = run!;
    const enrolled = r.pods.filter((p) => p.namespace === "demo");
    expect(enrolled).toHaveLength(4);
    const [f0, b0, f1, b1] = ["frontend-0", "backend-0", "frontend-1", "backend-1"].map((n) => r.pod("demo", n));

    const stoppedBefore = await Promise.all([0, 1].map((n) => metric(n, "workload_manager_proxies_stopped_total")));
    const startedBefore = await Promise.all([0, 1].map((n) => metric(n, "workload_manager_proxies_started_total")));
    expect(startedBefore).toEqual([2, 2]);
    const snapshotsBefore = [0, 1].map((n) => logLines(n, "agent", "snapshot sent"));

    // Short connections within and across nodes, both directions, plus larger transfers.
    startLoop(f0!, b1!, 1024);
    startLoop(f1!, b0!, 1024);
    startLoop(f0!, b0!, 1024);
    startLoop(b1!, f0!, 256 * 1024);
    await expect.poll(() => loops.every((l) => l.ok > 0), { timeout: 15_000 }).toBe(true);
    // Taken with traffic flowing, so the redirect counters are already above zero.
    const before = new Map<string, { text: string; redirectPackets: number[] }>();
    for (const p of enrolled) before.set(p.name, await rules(p));
    for (const v of before.values()) expect(v.text).toMatch(/-j REDIRECT --to-ports 15001/);
    const sum = (xs: number[]): number => xs.reduce((s, v) => s + v, 0);
    const packetsBefore = sum(enrolled.flatMap((p) => before.get(p.name)!.redirectPackets));
    expect(packetsBefore).toBeGreaterThan(0);

    const agents = [0, 1].map((n) => r.processes.findLast((p) => p.node === n && p.what === "agent")!);
    inGap = true;
    for (const a of agents) process.kill(a.pid, "SIGKILL");
    const { isAlive } = (await import(join(DIST_DEMO, "processes.js"))) as typeof import("../../src/demo/processes.js");
    await expect.poll(() => agents.some((a) => isAlive(a.pid)), { timeout: 5_000 }).toBe(false);
    await new Promise((res) => setTimeout(res, GAP_MS));
    inGap = false;
    const gapServed = loops.reduce((s, l) => s + l.okDuringGap, 0);

    await Promise.all([0, 1].map(async (n) => await r.startAgent(n)));
    // The new agents reconnected to ztunnel and sent their snapshot: both pods of the node again
    // (an Add ztunnel already serves is acknowledged without touching its proxy).
    await expect.poll(() => [0, 1].map((n) => logLines(n, "agent", "snapshot sent")), { timeout: 15_000 }).toEqual(snapshotsBefore.map((c) => c + 1));
    for (const n of [0, 1]) {
      const last = readFileSync(nodeLog(n, "agent"), "utf8").split("\n").filter((l) => l.includes('"msg":"snapshot sent"')).at(-1)!;
      expect(JSON.parse(last)).toMatchObject({ added: 2, failed: 0 });
    }
    // A verifier pass (VERIFY_INTERVAL 5s in the demo) after the restart, with traffic on.
    await new Promise((res) => setTimeout(res, 6_000));
    stop = true;
    await Promise.all(loops.map((l) => l.done));

    let packetsAfter = 0;
    for (const p of enrolled) {
      const after = await rules(p);
      packetsAfter += sum(after.redirectPackets);
      expect(after.text, `${p.name}'s rules`).toBe(before.get(p.name)!.text);
      // Rules re-created would restart their counters from zero.
      const was = before.get(p.name)!.redirectPackets;
      expect(after.redirectPackets).toHaveLength(was.length);
      after.redirectPackets.forEach((v, i) => expect(v).toBeGreaterThanOrEqual(was[i]!));
    }
    expect(await Promise.all([0, 1].map((n) => metric(n, "workload_manager_proxies_stopped_total")))).toEqual(stoppedBefore);
    expect(await Promise.all([0, 1].map((n) => metric(n, "workload_manager_proxies_started_total")))).toEqual(startedBefore);
    for (const n of [0, 1]) expect(logLines(n, "ztunnel", "pod proxies stopped on every worker")).toBe(0);

    expect(loops.flatMap((l) => l.failures)).toEqual([]);
    expect(gapServed).toBeGreaterThan(0);
    // The counters kept growing across the gap: the traffic went through these same rules.
    expect(packetsAfter).toBeGreaterThan(packetsBefore);
  }, 120_000);
});
