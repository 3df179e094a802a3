#!/usr/bin/env node
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { fetchDump } from "../cli/commands.js";
import { httpCall } from "../cli/http.js";
import { errorMessage } from "../shared/errors.js";
import { PodApps, type Transfer } from "./apps.js";
import { LEGACY_NAMESPACE, MESH_NAMESPACE, nodeName, podKey } from "./layout.js";
import { logRecords, startTimeOf } from "./processes.js";
import { connectionsTable, hboneTable, listenersTable, metricsTable, transfersTable } from "./report.js";
import { COUNT_PATH, podmanMissing } from "./podman.js";
import { denyPolicyFor, showDenial } from "./policy.js";
import { showDns } from "./dns.js";
import { podStartLatency } from "./latency.js";
import { AGENT_MAIN, AGENT_PORT, DemoRun, ZTUNNEL_MAIN, type PodsMode } from "./run.js";
import { DEMO_PREFIX, keptIsRunning, readKept, STATE_FILE, tearDownKept, writeKept } from "./state.js";

// The local demo (`npm run demo`): a cluster-free mesh of 2 nodes × 3 pods in network
// namespaces, one agent and one ztunnel per node, namespace `demo` enrolled and `legacy` not,
// traffic between them, and what ztunnel saw. Everything is removed at the end, on failure and
// on Ctrl-C, unless --keep.

const USAGE = `usage: npm run demo -- [--pods harness|podman|auto] [--keep | --down | --selfcheck]

  (no flag)     run the demo and remove everything it created
  --pods        how pods are made: podman containers through the CNI chain (bridge +
                host-local + ours), or network namespaces made by the demo itself;
                auto (default): podman when podman, runc and the CNI reference plugins
                are installed (and not with --keep), else the harness
  --keep        leave the mesh running and print how to inspect it
  --down        tear down a kept demo
  --selfcheck   only check the native layer on this machine (no mesh)
`;

const out = (s: string): void => void process.stdout.write(s);
let stepNo = 0;
/** Teardown left something behind: the run fails even if the demo itself worked. */
let cleanupFailed = false;
function step(s: string): void {
  stepNo++;
  out(`\n[${stepNo}] ${s}\n`);
}
function detail(s: string): void {
  out(s.split("\n").filter((l) => l !== "").map((l) => `    ${l}`).join("\n") + "\n");
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({ options: { pods: { type: "string", default: "auto" }, keep: { type: "boolean" }, down: { type: "boolean" }, selfcheck: { type: "boolean" }, help: { type: "boolean", short: "h" } }, strict: true });
  } catch (err) {
    process.stderr.write(`demo: ${errorMessage(err)}\n${USAGE}`);
    return 2;
  }
  const v = args.values;
  if (!["auto", "podman", "harness"].includes(v.pods)) {
    process.stderr.write(`demo: --pods must be harness, podman or auto, not "${v.pods}"\n${USAGE}`);
    return 2;
  }
  if (v.help === true) {
    out(USAGE);
    return 0;
  }
  if (v.selfcheck === true) {
    await import("./selfcheck.js");
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  }
  if (typeof process.getuid !== "function" || process.getuid() !== 0) {
    process.stderr.write("demo: must run as root (it creates network namespaces, veth pairs and iptables rules): sudo npm run demo\n");
    return 2;
  }
  if (v.down === true) {
    const kept = readKept();
    const removed = await tearDownKept(kept);
    out(kept === undefined && removed.length === 0 ? "no kept demo found; nothing to do\n" : `demo ${kept?.id ?? ""} torn down (${removed.length} network namespaces removed)\n`);
    return 0;
  }
  for (const f of [AGENT_MAIN, ZTUNNEL_MAIN]) {
    if (!existsSync(f)) {
      process.stderr.write(`demo: ${f} is missing: build first (npm run build)\n`);
      return 2;
    }
  }
  const kept = readKept();
  if (kept !== undefined && keptIsRunning(kept)) {
    process.stderr.write(`demo: a kept demo (${kept.id}) is still running; remove it first: npm run demo -- --down\n`);
    return 1;
  }
  // Leftovers of a crashed or half-removed earlier run go first.
  await tearDownKept(kept);
  const missing = podmanMissing();
  let mode: PodsMode;
  let why: string;
  if (v.pods === "podman") {
    if (missing !== undefined) {
      process.stderr.write(`demo: --pods podman: ${missing}; install podman, runc, containernetworking-plugins and busybox-static, or use --pods harness\n`);
      return 2;
    }
    if (v.keep === true) {
      process.stderr.write("demo: --keep works with --pods harness only (a kept run cannot remove containers with --down yet)\n");
      return 2;
    }
    [mode, why] = ["podman", "--pods podman"];
  } else if (v.pods === "harness") {
    [mode, why] = ["harness", "--pods harness"];
  } else if (v.keep === true) {
    [mode, why] = ["harness", "auto: --keep runs harness pods"];
  } else if (missing !== undefined) {
    [mode, why] = ["harness", `auto: podman path unavailable, ${missing}`];
  } else {
    [mode, why] = ["podman", "auto: podman, runc and the CNI reference plugins found"];
  }
  return await runDemo(v.keep === true, mode, why);
}

async function runDemo(keep: boolean, mode: PodsMode, why: string): Promise<number> {
  const run = new DemoRun(mode);
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    process.stderr.write(`\ndemo: ${sig}: stopping and removing everything${signals > 1 ? " (again: hurrying)" : ""}\n`);
    run.abort();
    if (signals > 1) void run.destroy().finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let kept = false;
  try {
    out(`ambient mesh demo ${run.id}: 2 nodes × 3 pods; namespace "${MESH_NAMESPACE}" joins the mesh, "${LEGACY_NAMESPACE}" stays out\n`);
    out(mode === "podman" ? `pods: podman containers (runc; CNI chain bridge + host-local + ambient-cni) [${why}]\n` : `pods: harness network namespaces (veth; our CNI plugin run as a runtime would) [${why}]\n`);
    step(
      mode === "podman"
        ? "Topology: a bridge, 2 node network namespaces; per node a podman CNI network (bridge + host-local + ambient-cni) with its own storage"
        : "Topology: a bridge, 2 node network namespaces, 6 pod network namespaces (veth, routed)",
    );
    await run.createTopology();
    const t = run.topology;
    detail(t.nodes.map((n) => `${nodeName(n.index)}  netns ${n.ns}  ${n.ip}  pods ${n.podCidr}`).join("\n"));
    detail(run.pods.map((p) => `${podKey(p).padEnd(18)} ${p.ip.padEnd(12)} on ${nodeName(p.node)}  ${mode === "podman" ? "container (started in step 5)" : p.where}`).join("\n"));

    step("Mesh root CA generated for this run; ztunnel local config and per-node agent inventories written");
    await run.writeConfig();
    detail(`run directory ${run.runDir}`);

    step("Starting one node agent (cni-agent) and one ztunnel per node, in local mode");
    await Promise.all([0, 1].map((n) => run.startNode(n)));
    detail(run.processes.map((p) => `${nodeName(p.node)}: ${p.what.padEnd(7)} pid ${p.pid}  log ${p.log}`).join("\n"));

    step(`Enrolling namespace "${MESH_NAMESPACE}" (ambientctl enroll ${MESH_NAMESPACE}: label istio.io/dataplane-mode=ambient)`);
    detail(`changed: ${(await run.enroll()).join(", ")}`);

    step(
      mode === "podman"
        ? "Starting the pods: podman run per pod; CNI ADD (bridge, host-local, then our plugin) returns only once the agent enrolled it, then busybox httpd starts on :8080"
        : "Starting the pods: each gets an app on :8080, then the runtime's CNI chain calls our plugin (ADD)",
    );
    const startOne = async (p: (typeof run.pods)[number]): Promise<void> => {
      await run.startPod(p);
      const what = p.namespace === MESH_NAMESPACE ? "enrolled: rules in its netns, handed to ztunnel over ZDS" : "not enrolled: passed through untouched";
      detail(`${podKey(p).padEnd(18)} ${what}${mode === "podman" ? `\n${"".padEnd(18)} ${p.ip}  ${p.where}` : ""}`);
    };
    if (mode === "podman") {
      // Nodes in parallel; within a node in order, which is the order host-local hands out addresses.
      await Promise.all([0, 1].map(async (n) => {
        for (const p of run.pods.filter((x) => x.node === n)) await startOne(p);
      }));
    } else {
      for (const p of run.pods) await startOne(p);
    }
    await run.waitPodsUp();
    detail(await podStartLatency(run));

    const dumps = async (): Promise<Array<{ node: string; dump: Awaited<ReturnType<typeof fetchDump>> }>> =>
      await Promise.all([0, 1].map(async (n) => ({ node: nodeName(n), dump: await fetchDump(run.nodeTarget(n)) })));
    step("Listeners ztunnel opened inside each enrolled pod (every worker thread has its own, SO_REUSEPORT)");
    out(indent(listenersTable(await dumps())));

    step("Traffic between pods (every byte counted by the receiving app)");
    const transfers = await traffic(run);
    out(indent(transfersTable(transfers)));
    run.check();

    const target = run.pod(MESH_NAMESPACE, "backend-1");
    const client = run.pod(MESH_NAMESPACE, "frontend-0");
    const policy = denyPolicyFor(target, client);
    step(`Authorization: a Deny policy on ${podKey(target)} for the identity ${policy.principal}; ${podKey(client)} tries again`);
    out(indent(await showDenial(run, client, target, policy)));
    run.check();
    step("DNS: a mesh name resolved inside a pod by ztunnel's DNS proxy");
    out(indent(await showDns(run, client)));
    run.check();
    // Workers flush telemetry every second and on close.
    await new Promise((r) => setTimeout(r, 1_500));
    run.check();

    const records = [0, 1].flatMap((n) => logRecords(run.processes.find((p) => p.node === n && p.what === "ztunnel")?.log ?? "", "access").map((rec) => ({ node: nodeName(n), rec })));
    step("Connections ztunnel carried (from its access log)");
    out(indent(connectionsTable(records)));
    step("HBONE connections and the identities on both ends (mutual TLS, SPIFFE URI SANs)");
    out(indent(hboneTable(records)));

    const perNode = await Promise.all(
      [0, 1].map(async (n) => {
        const r = await httpCall({ url: "http://127.0.0.1:15020", netns: run.nodeNs(n) }, "/metrics", "GET", 2_000).catch(() => undefined);
        return { node: nodeName(n), metrics: r?.status === 200 ? r.body : undefined, dump: await fetchDump(run.nodeTarget(n)) };
      }),
    );
    run.check();
    const m = metricsTable(perNode);
    step(`Metric totals per node (${m.source})`);
    out(indent(m.text));

    const sample = records.find(({ rec }) => rec.direction === "inbound" && typeof rec["src.identity"] === "string") ?? records[0];
    step("A sample access log line (pino JSON, scope \"access\")");
    detail(sample !== undefined ? JSON.stringify(sample.rec) : "(none written)");

    if (keep) {
      await keepRunning(run);
      kept = true;
      return 0;
    }
    step(`Tearing down: ${mode === "podman" ? "containers removed (podman rm: CNI DEL through the chain), " : ""}ztunnels drain, agents stop, namespaces and files removed`);
    return 0;
  } catch (err) {
    process.stderr.write(`\ndemo: ${errorMessage(err)}\n`);
    return run.interruptedBySignal() ? 130 : 1;
  } finally {
    if (!kept) {
      try {
        await run.destroy();
        out("done: nothing left behind\n");
      } catch (err) {
        process.stderr.write(`demo: ${errorMessage(err)}; what is left can be removed with: npm run demo -- --down\n`);
        cleanupFailed = true;
      }
    }
  }
}

async function traffic(run: DemoRun): Promise<Transfer[]> {
  const apps: PodApps = run.apps;
  const go = async (fromNs: string, from: string, toNs: string, to: string, bytes: number): Promise<Transfer> => {
    run.check();
    const a = run.pod(fromNs, from);
    const b = run.pod(toNs, to);
    const opts = run.mode === "podman" ? { http: COUNT_PATH } : {};
    return await apps.transfer(a.netnsPath, `${podKey(a)} (${nodeName(a.node)})`, `${podKey(b)} (${nodeName(b.node)})`, b.ip, bytes, opts);
  };
  return [
    await go(MESH_NAMESPACE, "frontend-0", MESH_NAMESPACE, "backend-0", 64 * 1024),
    await go(MESH_NAMESPACE, "frontend-0", MESH_NAMESPACE, "backend-1", 1024 * 1024),
    await go(MESH_NAMESPACE, "frontend-1", LEGACY_NAMESPACE, "legacy-0", 16 * 1024),
    await go(LEGACY_NAMESPACE, "legacy-1", MESH_NAMESPACE, "backend-0", 16 * 1024),
  ];
}

async function keepRunning(run: DemoRun): Promise<void> {
  await writeKept({
    id: run.id,
    runDir: run.runDir,
    context: run.contextPath,
    pids: run.processes.map((p) => ({ pid: p.pid, startTime: startTimeOf(p.pid) ?? "" })),
    netns: [run.topology.networkNs, ...run.topology.nodes.map((n) => n.ns), ...run.topology.pods.map((p) => p.ns)],
    kept: Date.now(),
  });
  // The apps lived in this process; the mesh itself (agents, ztunnels, rules) keeps running.
  await run.apps.close();
  const ctx = run.contextPath;
  const n0 = run.nodeNs(0);
  const pod = run.topology.pods.find((p) => p.name === "backend-0")?.ns ?? "";
  step(`Kept running (state in ${STATE_FILE}). Inspect it:`);
  detail(
    [
      `node dist/src/cli/main.js --context ${ctx} status`,
      `node dist/src/cli/main.js --context ${ctx} listeners ${MESH_NAMESPACE}/backend-0`,
      `node dist/src/cli/main.js --context ${ctx} workloads`,
      `node dist/src/cli/main.js --context ${ctx} certificates -o yaml`,
      `node dist/src/cli/main.js --netns ${n0} --agent 127.0.0.1:${AGENT_PORT} status     # one node`,
      `ip netns exec ${pod} ss -tlnp                 # ztunnel's listeners as the pod's kernel sees them`,
      `ip netns exec ${pod} iptables-save -t nat     # the in-pod redirection`,
      `ip netns list | grep ${DEMO_PREFIX}${run.id}`,
      `tail -f ${run.runDir}/node0/ztunnel.log`,
      `npm run demo -- --down                        # tear it all down`,
    ].join("\n"),
  );
}

function indent(s: string): string {
  return s.split("\n").filter((l) => l !== "").map((l) => `    ${l}`).join("\n") + "\n";
}

const code = await main();
process.exitCode = cleanupFailed && code === 0 ? 1 : code;
