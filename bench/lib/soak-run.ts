import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage } from "../../src/shared/errors.js";
import { MESH_NAMESPACE, podUid } from "../../src/demo/layout.js";
import { addDenyPolicy, denyPolicyFor, waitPolicyLoaded } from "../../src/demo/policy.js";
import { DemoRun, type RunPod } from "../../src/demo/run.js";
import { BenchError } from "./errors.js";
import { sampleProcess, type Sample } from "./soak-sampler.js";
import { PolicyTimeline, TrafficLoops, type FlowResult } from "./soak-traffic.js";
import type { Teardown } from "./teardown.js";

// One soak: the demo's 2-node mesh (agents and ztunnels as processes, pods enrolled through our
// CNI plugin) plus one churn pod per node, then for the whole duration at once: traffic loops,
// a pod enrolled or removed through the CNI plugin every second, ztunnel's local config
// rewritten every 10 s (every second pair of rewrites with a Deny policy on backend-1 for the
// frontends' identity), and each ztunnel's RSS and fd count sampled.

export interface SoakOptions {
  durationS: number;
  sampleS: number;
  reloadS: number;
  churnMs: number;
  longBytes: number;
}

export interface SoakOutcome {
  samples: Sample[];
  flows: FlowResult[];
  churn: { ok: number; failed: number; failures: string[] };
  reloads: number;
  policyOnWindows: number;
}

const POLICY_GRACE_MS = 3_000;

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.soak-${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

async function sleepUnless(ms: number, stopped: () => boolean): Promise<void> {
  const until = Date.now() + ms;
  while (!stopped() && Date.now() < until) await new Promise((r) => setTimeout(r, Math.min(200, until - Date.now())));
}

export async function buildMesh(teardown: Teardown, log: (s: string) => void): Promise<{ run: DemoRun; churnPods: RunPod[] }> {
  const run = new DemoRun("harness");
  teardown.add("demo mesh", async () => await run.destroy());
  await run.createTopology();
  const churnPods: RunPod[] = [];
  for (const n of [0, 1]) {
    const name = `churn-${n}`;
    const info = await run.topology.addPod(n, name);
    const p: RunPod = { name, namespace: MESH_NAMESPACE, node: n, serviceAccount: "churn", uid: podUid(MESH_NAMESPACE, name), ip: info.ip, netnsPath: info.netnsPath, where: `netns ${info.ns}` };
    run.pods.push(p);
    churnPods.push(p);
  }
  await run.writeConfig();
  await Promise.all([0, 1].map(async (n) => await run.startNode(n)));
  await run.enroll();
  for (const p of run.pods) await run.startPod(p);
  await run.waitPodsUp();
  log(`mesh up: run ${run.id}, ${run.pods.length} pods (${run.pods.filter((p) => p.namespace === MESH_NAMESPACE).length} enrolled)`);
  return { run, churnPods };
}

export async function soak(run: DemoRun, churnPods: RunPod[], opts: SoakOptions, stopped: () => boolean, log: (s: string) => void): Promise<SoakOutcome> {
  const pod = (name: string): RunPod => run.pod(MESH_NAMESPACE, name);
  const [f0, b0, f1, b1] = [pod("frontend-0"), pod("backend-0"), pod("frontend-1"), pod("backend-1")];
  const policy = denyPolicyFor(b1, f0);
  // The two local-config texts the reloads alternate between: without and with the policy.
  const base = await readFile(run.localConfigPath, "utf8");
  const denyPath = join(run.runDir, "local-config-deny.yaml");
  await writeFile(denyPath, base);
  await addDenyPolicy(denyPath, b1, policy);
  const withDeny = await readFile(denyPath, "utf8");

  const timeline = new PolicyTimeline(POLICY_GRACE_MS);
  const traffic = new TrafficLoops(run.apps, timeline);
  const short = 1024;
  // The policy denies the identity frontend (both frontends) towards backend-1.
  traffic.start({ from: f0, to: b0, bytes: short, kind: "short", policyTarget: false });
  traffic.start({ from: f0, to: b1, bytes: short, kind: "short", policyTarget: true });
  traffic.start({ from: f1, to: b0, bytes: short, kind: "short", policyTarget: false });
  traffic.start({ from: f1, to: b1, bytes: short, kind: "short", policyTarget: true });
  traffic.start({ from: b1, to: f0, bytes: opts.longBytes, kind: "long", policyTarget: false });
  traffic.start({ from: b0, to: f1, bytes: opts.longBytes, kind: "long", policyTarget: false });

  const t0 = Date.now();
  const end = t0 + opts.durationS * 1000;
  const done = (): boolean => stopped() || Date.now() >= end;
  const samples: Sample[] = [];
  const churn = { ok: 0, failed: 0, failures: [] as string[] };
  let reloads = 0;
  let policyOnWindows = 0;

  const sampler = (async () => {
    while (!done()) {
      for (const n of [0, 1]) {
        const zt = run.processes.findLast((p) => p.node === n && p.what === "ztunnel");
        if (zt === undefined) throw new BenchError(`no ztunnel on node${n}`);
        samples.push(await sampleProcess(zt.pid, n, Math.round((Date.now() - t0) / 100) / 10));
      }
      await sleepUnless(opts.sampleS * 1000, done);
    }
  })();

  const churner = (async () => {
    const enrolled = new Set(churnPods.map((p) => p.name));
    for (let i = 0; !done(); i++) {
      const started = Date.now();
      const p = churnPods[i % churnPods.length]!;
      const cmd = enrolled.has(p.name) ? "DEL" : "ADD";
      try {
        await run.cni(p, cmd);
        if (cmd === "DEL") enrolled.delete(p.name);
        else enrolled.add(p.name);
        churn.ok++;
      } catch (err) {
        churn.failed++;
        if (churn.failures.length < 20) churn.failures.push(`${new Date(started).toISOString()} ${errorMessage(err)}`);
      }
      await sleepUnless(opts.churnMs - (Date.now() - started), done);
    }
    // Leave the churn pods enrolled, as the mesh started.
    for (const p of churnPods) if (!enrolled.has(p.name)) await run.cni(p, "ADD").catch(() => undefined);
  })();

  const reloader = (async () => {
    for (let k = 1; ; k++) {
      await sleepUnless(opts.reloadS * 1000, done);
      if (done()) return;
      const on = k % 4 === 2 || k % 4 === 3;
      // The comment makes every rewrite a change ztunnel reloads, also when the policy stays.
      await writeAtomic(run.localConfigPath, `${on ? withDeny : base}# soak reload ${k}\n`);
      reloads++;
      if (on !== timeline.on) {
        timeline.set(on);
        if (on) {
          policyOnWindows++;
          await waitPolicyLoaded([0, 1].map((n) => run.nodeTarget(n)), policy, () => undefined).catch((err: unknown) => log(`policy load not seen: ${errorMessage(err)}`));
        }
        log(`reload ${k}: Deny policy ${on ? "on" : "off"}`);
      }
    }
  })();

  const progress = setInterval(() => {
    const last = samples.slice(-2).map((s) => `node${s.node} ${s.rssMiB} MiB ${s.fds} fds`).join(", ");
    const ok = traffic.results.reduce((s, r) => s + r.ok, 0);
    const failed = traffic.results.reduce((s, r) => s + r.failed, 0);
    log(`${Math.round((Date.now() - t0) / 1000)} s: ${ok} connections ok, ${failed} unexplained failures, churn ${churn.ok}/${churn.ok + churn.failed}, ${reloads} reloads; ${last}`);
  }, 30_000);
  try {
    await Promise.all([sampler, churner, reloader]);
  } finally {
    clearInterval(progress);
    await traffic.stop();
  }
  return { samples, flows: traffic.results, churn, reloads, policyOnWindows };
}
