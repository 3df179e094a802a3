import { readFile, rename, writeFile } from "node:fs/promises";
import { isMap, isSeq, parseDocument } from "yaml";
import { getJson } from "../cli/http.js";
import type { NodeTarget } from "../cli/context.js";
import { errorMessage } from "../shared/errors.js";
import { DemoError } from "./apps.js";
import { nodeName, podKey, TRUST_DOMAIN, type DemoPod } from "./layout.js";
import { COUNT_PATH } from "./podman.js";
import { logRecords } from "./processes.js";
import type { DemoRun, RunPod } from "./run.js";

// The demo's authorization step: a Deny policy on one workload for one identity, written into
// ztunnel's local config as istiod would publish it (a WorkloadSelector policy named in the
// workload's authorizationPolicies). The destination ztunnel refuses the HBONE CONNECT with 401,
// so the app behind it never gets a connection.

export interface DenyPolicy {
  name: string;
  namespace: string;
  /** Istio principal form: <trust domain>/ns/<namespace>/sa/<service account>. */
  principal: string;
}

export function denyPolicyFor(target: DemoPod, from: DemoPod): DenyPolicy {
  return { name: `deny-${from.serviceAccount}`, namespace: target.namespace, principal: `${TRUST_DOMAIN}/ns/${from.namespace}/sa/${from.serviceAccount}` };
}

/** Adds the policy to the local config and names it on the target workload (atomic rewrite). */
export async function addDenyPolicy(localConfigPath: string, target: DemoPod, policy: DenyPolicy): Promise<void> {
  const doc = parseDocument(await readFile(localConfigPath, "utf8"));
  const workloads = doc.get("workloads");
  if (!isSeq(workloads)) throw new DemoError(`${localConfigPath}: no workloads list`);
  const w = workloads.items.find((i) => isMap(i) && i.get("uid") === target.uid);
  if (!isMap(w)) throw new DemoError(`${localConfigPath}: no workload with uid ${target.uid}`);
  w.set("authorizationPolicies", doc.createNode([`${policy.namespace}/${policy.name}`], { flow: true }));
  const entry = doc.createNode({
    name: policy.name,
    namespace: policy.namespace,
    scope: "WorkloadSelector",
    action: "Deny",
    rules: [[[{ principals: [policy.principal] }]]],
  });
  const list = doc.get("policies");
  if (isSeq(list)) list.add(entry);
  else doc.set("policies", doc.createNode([entry]));
  const tmp = `${localConfigPath}.demo-${process.pid}.tmp`;
  await writeFile(tmp, doc.toString());
  await rename(tmp, localConfigPath);
}

/** Waits until every node's ztunnel serves a state holding the policy. */
export async function waitPolicyLoaded(nodes: NodeTarget[], policy: DenyPolicy, check: () => void, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    check();
    const loaded = await Promise.all(
      nodes.map(async (n) => {
        const raw = (await getJson({ url: n.ztunnelAdmin, netns: n.netns }, "/config_dump").catch(() => undefined)) as { policies?: Array<{ name?: string; namespace?: string }> } | undefined;
        return (raw?.policies ?? []).some((p) => p.name === policy.name && p.namespace === policy.namespace);
      }),
    );
    if (loaded.every(Boolean)) break;
    if (Date.now() > deadline) throw new DemoError(`ztunnel did not load policy ${policy.namespace}/${policy.name} within ${timeoutMs} ms (see its log for "reload failed")`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // The main thread serves it; its workers get each snapshot right after it installs it.
  await new Promise((r) => setTimeout(r, 250));
}

/** Applies the policy, then one attempt that it must deny: 401 at HBONE CONNECT, no connection at the app. */
export async function showDenial(run: DemoRun, client: RunPod, target: RunPod, policy: DenyPolicy): Promise<string> {
  await addDenyPolicy(run.localConfigPath, target, policy);
  await waitPolicyLoaded([0, 1].map((n) => run.nodeTarget(n)), policy, () => run.check());
  const seenBefore = run.apps.connectionsSeen(podKey(target));
  const opts = run.mode === "podman" ? { http: COUNT_PATH, timeoutMs: 5_000 } : { timeoutMs: 5_000 };
  const outcome = await run.apps
    .transfer(client.netnsPath, podKey(client), podKey(target), target.ip, 4096, opts)
    .then((t) => (t.reply === "" ? "closed with no answer" : `ANSWERED: ${t.reply}`))
    .catch((err: unknown) => `refused: ${err instanceof Error && err.cause instanceof Error ? err.cause.message : errorMessage(err)}`);
  if (outcome.startsWith("ANSWERED")) throw new DemoError(`the policy did not deny ${podKey(client)} → ${podKey(target)}: ${outcome}`);
  // The source ztunnel logs the CONNECT's answer once the connection closes.
  const log = run.processes.find((p) => p.node === client.node && p.what === "ztunnel")?.log ?? "";
  const deadline = Date.now() + 5_000;
  let rec: Record<string, unknown> | undefined;
  while ((rec = logRecords(log, "access").find((r) => r["src.workload"] === client.name && String(r.error ?? "").includes("401"))) === undefined && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  if (rec === undefined) throw new DemoError(`no 401 in ${nodeName(client.node)}'s ztunnel access log for ${podKey(client)} → ${podKey(target)}`);
  const destLog = run.processes.find((p) => p.node === target.node && p.what === "ztunnel")?.log ?? "";
  const denied = logRecords(destLog, "access").find((r) => r.direction === "inbound" && String(r.error ?? "").includes(`${policy.namespace}/${policy.name}`));
  const lines = [
    `policy     ${policy.namespace}/${policy.name}: WorkloadSelector, Deny, principals [${policy.principal}] (ztunnel local config, reloaded on both nodes)`,
    `client     ${podKey(client)} → ${podKey(target)} (${target.ip}:8080): ${outcome}`,
    `ztunnel    ${nodeName(client.node)} outbound: ${String(rec.error)}`,
    ...(denied !== undefined ? [`ztunnel    ${nodeName(target.node)} inbound: ${String(denied.error)}`] : []),
  ];
  if (run.mode === "harness") {
    const seen = run.apps.connectionsSeen(podKey(target)) - seenBefore;
    if (seen !== 0) throw new DemoError(`${podKey(target)}'s app saw ${seen} connection(s) although the policy denied it`);
    lines.push(`app        ${podKey(target)} saw no connection (its accept count did not move)`);
  }
  return lines.join("\n");
}
