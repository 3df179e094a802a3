import { podArgs } from "./cni/args.js";
import type { CmdEnv } from "./cni/env.js";
import { CniCode, CniError } from "./cni/errors.js";
import { formatResult, parseResult, type ParsedResult } from "./cni/result.js";
import type { PluginConfig } from "./config.js";
import { namespaceExclusion, podEnrollment, podIpFromCidr, type PodIp } from "../src/cni-contract/index.js";
import { postAdd, postDel, probeAgent } from "./agent-client.js";
import { fetchPodAndNamespace } from "./kube/client.js";
import { loadKubeconfig } from "./kube/kubeconfig.js";
import type { PluginLog } from "./log.js";

// The CNI commands. Each returns what goes to stdout (undefined = print nothing) or throws a
// CniError. ADD is fail-closed: an ambient pod starts only after the agent answered 200.
export interface Invocation {
  env: CmdEnv;
  conf: PluginConfig;
  log: PluginLog;
}

function prevResult(conf: PluginConfig): ParsedResult | undefined {
  return conf.prevResult === undefined || conf.prevResult === null ? undefined : parseResult(conf.prevResult);
}

function eventIps(result: ParsedResult | undefined): PodIp[] {
  if (result === undefined) return [];
  try {
    return result.ips.map((ip) => podIpFromCidr(ip.address, ip.interface ?? null, ip.gateway ?? null));
  } catch (err) {
    throw new CniError(CniCode.DecodeFailure, `invalid prevResult: ${(err as Error).message}`);
  }
}

type Skip = { skip: true; reason: string } | { skip: false };

/** Decisions that need nobody: config switches, missing pod identity, excluded namespaces. */
function localSkip(conf: PluginConfig, podName: string, podNamespace: string): Skip {
  if (!conf.ambientEnabled) return { skip: true, reason: "ambient_enabled is false" };
  if (podName === "") return { skip: true, reason: "no K8S_POD_NAME in CNI_ARGS: not a pod" };
  const excluded = namespaceExclusion(podNamespace, { excludeNamespaces: conf.excludeNamespaces, agentNamespace: conf.podNamespace });
  return excluded === undefined ? { skip: false } : { skip: true, reason: excluded };
}

/** Fail closed: a pod we cannot identify, or whose CNI_ARGS is garbage, must not start unprotected. */
function malformedArgs(problems: readonly string[], what: string): CniError {
  return new CniError(
    CniCode.InvalidEnv,
    `malformed CNI_ARGS: ${problems.join("; ")}`,
    `${what}; the pod is not started unprotected (the runtime writes K8S_POD_NAME=<name>;K8S_POD_NAMESPACE=<namespace>)`,
  );
}

export async function cmdAdd({ env, conf, log }: Invocation): Promise<string> {
  const result = prevResult(conf);
  const output = JSON.stringify(formatResult(result, conf.cniVersion));
  const args = podArgs(env.args);
  const { podName, podNamespace } = args;
  const pod = { pod: podName, namespace: podNamespace, containerId: env.containerId };
  if (conf.ambientEnabled && args.identityProblems.length > 0) {
    // Only a namespace we can read and that never enrolls lets such a sandbox through.
    const excluded = args.namespaceSound && podNamespace !== "" ? namespaceExclusion(podNamespace, { excludeNamespaces: conf.excludeNamespaces, agentNamespace: conf.podNamespace }) : undefined;
    if (excluded === undefined) throw malformedArgs(args.identityProblems, "cannot tell which pod this sandbox belongs to");
  }
  const local = localSkip(conf, podName, podNamespace);
  if (local.skip) {
    log.debug("pass through", { ...pod, reason: local.reason });
    return output;
  }
  if (conf.kubeconfig !== "") {
    if (podNamespace === "") {
      // With a cluster, a sandbox without K8S_POD_NAMESPACE is not a Kubernetes pod (Istio's rule).
      log.debug("pass through", { ...pod, reason: "no K8S_POD_NAMESPACE: not a Kubernetes pod" });
      return output;
    }
    const target = await loadKubeconfig(conf.kubeconfig);
    const facts = await fetchPodAndNamespace(target, podNamespace, podName);
    const decision = podEnrollment(facts.pod, facts.namespaceLabels, conf.enablementSelectors);
    if (!decision.ambient) {
      log.debug("pass through", { ...pod, reason: decision.reason });
      return output;
    }
  }
  // Without a kubeconfig the agent holds the inventory and decides; with one, the pod is ambient.
  if (args.otherProblems.length > 0) throw malformedArgs(args.otherProblems, `pod ${podNamespace}/${podName} would be enrolled`);
  const ips = eventIps(result);
  const reply = await postAdd(conf.runDir, { netns: env.netns, podName, podNamespace, ips, containerId: env.containerId });
  // Debug: the agent logs the same ADD at info ("CNI ADD handled"); at info this line would
  // cost every ADD a second exchange with the agent only to log it twice.
  log.debug("agent accepted pod", { ...pod, netns: env.netns, ips: ips.map((i) => i.address), reply: reply.trim() });
  return output;
}

export async function cmdDel({ env, conf, log }: Invocation): Promise<undefined> {
  const { podName, podNamespace } = podArgs(env.args);
  const local = localSkip(conf, podName, podNamespace);
  if (local.skip) return undefined;
  // DEL must succeed even when the agent is gone (the runtime would otherwise leak the sandbox).
  try {
    const reply = await postDel(conf.runDir, { containerId: env.containerId, netns: env.netns, podName, podNamespace });
    if (reply.status !== 200) log.warn("agent did not take the DEL notification", { pod: podName, status: reply.status });
  } catch (err) {
    log.warn("agent unreachable for DEL notification (ignored)", { pod: podName, error: (err as Error).message });
  }
  return undefined;
}

export function cmdCheck({ conf }: Invocation): undefined {
  // CHECK is a chained-plugin consistency check: we keep no per-container state, so a valid
  // config and a well-formed prevResult are all there is to verify.
  if (conf.prevResult === undefined || conf.prevResult === null) {
    throw new CniError(CniCode.InvalidConfig, "CHECK needs prevResult from the previous plugin in the chain");
  }
  parseResult(conf.prevResult);
  return undefined;
}

export async function cmdStatus({ conf }: Invocation): Promise<undefined> {
  if (conf.ambientEnabled) await probeAgent(conf.runDir);
  return undefined;
}

export function cmdGc(): undefined {
  // Nothing to collect: the plugin keeps no per-attachment state (the agent owns pod state).
  return undefined;
}
