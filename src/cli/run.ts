import { parseArgs } from "node:util";
import { errorMessage } from "../shared/errors.js";
import { certificates, listeners, status, workloads, type CommandOutput } from "./commands.js";
import { resolveContext, type CliContext, type NodeTarget } from "./context.js";
import { kubeTargets, type KubeTargets } from "./kube-targets.js";
import { checkNamespace, enrollKube, enrollLocal, findKubeconfig, loadKubeConfig, type EnrollResult } from "./enroll.js";
import { EXIT, UsageError, exitCodeOf, type ExitCode } from "./errors.js";
import { parseFormat, render } from "./format.js";
import { parseConfigType, ztunnelConfig } from "./ztunnel-config.js";

// ambientctl: inspect and steer the node data plane (ztunnel and agent endpoints; namespace
// enrollment through Kubernetes or the local inventory). Exit codes: 0 ok, 1 the thing asked
// failed or is unhealthy, 2 usage, 3 an endpoint or the API server could not be reached.

export const USAGE = `usage: ambientctl <command> [flags]

commands:
  status                     agent health/readiness, ztunnel readiness, ZDS connection, pending pods
  workloads                  workloads ztunnel knows, with protocol and in-pod state
  listeners [<ns>/<pod>]     per-pod listeners on every worker (mark, connections, kernel view)
  certificates               workload certificates ztunnel holds
  ztunnel-config <type>      as istioctl ztunnel-config: workloads, services, policies, certificates,
                             connections, all; log [<level>] shows (sets) ztunnel's log level
  enroll <namespace>         label istio.io/dataplane-mode=ambient (Kubernetes or local inventory)
  unenroll <namespace>       remove that label

flags:
  -o, --output table|json|yaml
  --context <file>           nodes to talk to (a kept demo prints one)      env AMBIENTCTL_CONTEXT
  --netns <name|path>        reach 127.0.0.1 endpoints inside this netns    env AMBIENTCTL_NETNS
  --admin <host:port>        ztunnel admin (default 127.0.0.1:15000)        env AMBIENTCTL_ZTUNNEL_ADMIN
  --agent <host:port>        agent health/metrics (default 127.0.0.1:8000)  env AMBIENTCTL_AGENT
  --node <name>              only this node of the context
  --kubeconfig <file>        inspect: find each node's ztunnel/agent pod through the API server and
                             reach its admin ports by port-forward (as istioctl);
                             enroll: label the Namespace (default: KUBECONFIG, ~/.kube/config)
  -n, --namespace <ns>       with --kubeconfig: look for the pods only in this namespace
  --local                    enroll via the local inventory even if a kubeconfig exists
  --inventory <file>         agent inventory to edit (repeatable)           env AMBIENTCTL_INVENTORY (comma list)
  --local-config <file>      ztunnel local config: namespace workloads become HBONE/TCP
                                                                            env AMBIENTCTL_LOCAL_CONFIG

exit codes: 0 ok, 1 failed or unhealthy, 2 usage, 3 unreachable
`;

export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
  env: Readonly<Record<string, string | undefined>>;
}

export async function runCli(argv: string[], io: CliIo): Promise<ExitCode> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    const code = exitCodeOf(err);
    io.err(`ambientctl: ${errorMessage(err)}\n`);
    if (code === EXIT.usage) io.err("run 'ambientctl --help' for usage\n");
    return code;
  }
}

async function dispatch(argv: string[], io: CliIo): Promise<ExitCode> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        output: { type: "string", short: "o" },
        context: { type: "string" },
        netns: { type: "string" },
        admin: { type: "string" },
        agent: { type: "string" },
        node: { type: "string" },
        kubeconfig: { type: "string" },
        namespace: { type: "string", short: "n" },
        local: { type: "boolean" },
        inventory: { type: "string", multiple: true },
        "local-config": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  const { values: v, positionals } = parsed;
  const [cmd, ...rest] = positionals;
  if (v.help === true || cmd === "help") {
    io.out(USAGE);
    return EXIT.ok;
  }
  if (cmd === undefined) throw new UsageError("missing command (status, workloads, listeners, certificates, ztunnel-config, enroll, unenroll)");
  const format = parseFormat(v.output);
  const ctx = (): CliContext =>
    resolveContext({ context: v.context, netns: v.netns, admin: v.admin, agent: v.agent, inventory: v.inventory, localConfig: v["local-config"], node: v.node }, io.env);
  // Inspection from a workstation: --kubeconfig finds the pods and port-forwards to them.
  let kube: KubeTargets | undefined;
  const nodes = async (): Promise<NodeTarget[]> => {
    if (v.kubeconfig === undefined) return ctx().nodes;
    if (v.context !== undefined || v.netns !== undefined) throw new UsageError("--kubeconfig reaches the nodes through the API server; it does not combine with --context or --netns");
    kube ??= await kubeTargets(loadKubeConfig(v.kubeconfig), { node: v.node, namespace: v.namespace });
    return kube.nodes;
  };
  try {
    return await dispatchCommand(cmd, rest, format, v, io, ctx, nodes);
  } finally {
    await kube?.close();
  }
}

type Values = { kubeconfig?: string | undefined; local?: boolean | undefined };

async function dispatchCommand(
  cmd: string,
  rest: string[],
  format: ReturnType<typeof parseFormat>,
  v: Values,
  io: CliIo,
  ctx: () => CliContext,
  nodes: () => Promise<NodeTarget[]>,
): Promise<ExitCode> {
  const maxArgs = (n: number): void => {
    if (rest.length > n) throw new UsageError(`${cmd}: unexpected argument "${rest[n]}"`);
  };

  let out: CommandOutput;
  switch (cmd) {
    case "status":
      maxArgs(0);
      out = await status(await nodes());
      break;
    case "workloads":
      maxArgs(0);
      out = await workloads(await nodes());
      break;
    case "listeners": {
      maxArgs(1);
      const pod = rest[0];
      if (pod !== undefined && !/^[a-z0-9-.]+\/[A-Za-z0-9-.]+$/.test(pod)) throw new UsageError(`listeners: "${pod}" is not <namespace>/<pod>`);
      out = await listeners(await nodes(), pod);
      break;
    }
    case "ztunnel-config":
    case "zc": {
      const [type, ...args] = rest;
      out = await ztunnelConfig(await nodes(), parseConfigType(type), args);
      break;
    }
    case "certificates":
    case "certs":
      maxArgs(0);
      out = await certificates(await nodes());
      break;
    case "enroll":
    case "unenroll": {
      maxArgs(1);
      const ns = checkNamespace(rest[0]);
      const res = await enroll(ns, cmd === "enroll", v.local === true, v.kubeconfig, ctx, io);
      out = {
        data: res,
        table: () =>
          `namespace ${ns} ${res.enrolled ? "enrolled in" : "removed from"} the ambient mesh` +
          (res.changed.length > 0 ? ` (changed: ${res.changed.join(", ")})` : ` (already so: ${res.unchanged.join(", ")})`) +
          "\n",
      };
      break;
    }
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
  io.out(render(format, out.data, out.table));
  if (out.problem !== undefined) {
    io.err(`ambientctl: ${out.problem.message}\n`);
    return out.problem.exitCode;
  }
  return EXIT.ok;
}

async function enroll(ns: string, on: boolean, forceLocal: boolean, kubeFlag: string | undefined, ctx: () => CliContext, io: CliIo): Promise<EnrollResult> {
  const kubeconfig = forceLocal ? undefined : findKubeconfig(kubeFlag, io.env);
  if (kubeconfig !== undefined) return await enrollKube(loadKubeConfig(kubeconfig), ns, on);
  const c = ctx();
  const inventories = c.nodes.map((n) => n.inventory).filter((p): p is string => p !== undefined);
  if (inventories.length === 0) {
    throw new UsageError("no kubeconfig and no local inventory: pass --inventory <file> (the agent's LOCAL_INVENTORY_PATH), --context, or --kubeconfig");
  }
  return await enrollLocal(ns, on, { inventories, localConfig: c.localConfig });
}
