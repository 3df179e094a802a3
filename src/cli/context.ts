import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { errorMessage } from "../shared/errors.js";
import { UsageError } from "./errors.js";

// Which nodes ambientctl talks to. One node from flags/env by default (ztunnel admin on
// 127.0.0.1:15000 of this netns or of --netns); several from a context file, which the local
// demo writes for a kept run:
//
//   nodes:
//     - name: node0
//       netns: ad-1a2b3c-n0
//       ztunnelAdmin: http://127.0.0.1:15000
//       ztunnelReadiness: http://127.0.0.1:15021
//       ztunnelStats: http://127.0.0.1:15020
//       agent: http://127.0.0.1:15990
//       inventory: /run/ambient-demo/1a2b3c/node0/inventory.yaml
//   localConfig: /run/ambient-demo/1a2b3c/local-config.yaml

export interface NodeTarget {
  name: string;
  netns: string | undefined;
  ztunnelAdmin: string;
  ztunnelReadiness: string;
  ztunnelStats: string;
  agent: string;
  inventory: string | undefined;
}

export interface CliContext {
  nodes: NodeTarget[];
  localConfig: string | undefined;
}

export const DEFAULTS = {
  ztunnelAdmin: "http://127.0.0.1:15000",
  ztunnelReadiness: "http://127.0.0.1:15021",
  ztunnelStats: "http://127.0.0.1:15020",
  agent: "http://127.0.0.1:8000",
} as const;

export interface TargetFlags {
  context?: string | undefined;
  netns?: string | undefined;
  admin?: string | undefined;
  agent?: string | undefined;
  inventory?: string[] | undefined;
  localConfig?: string | undefined;
  node?: string | undefined;
}

type Env = Readonly<Record<string, string | undefined>>;

function urlOf(raw: string, what: string): string {
  let u: URL;
  try {
    u = new URL(raw.includes("://") ? raw : `http://${raw}`);
  } catch {
    throw new UsageError(`${what} "${raw}" is not a URL or host:port (example: 127.0.0.1:15000)`);
  }
  if (u.protocol !== "http:") throw new UsageError(`${what} "${raw}": only http:// is supported`);
  return `http://${u.host}`;
}

/** Flags win over env (AMBIENTCTL_*), env over the context file, the file over defaults. */
export function resolveContext(flags: TargetFlags, env: Env = process.env): CliContext {
  const ctxPath = flags.context ?? env.AMBIENTCTL_CONTEXT;
  const inventories = flags.inventory !== undefined && flags.inventory.length > 0 ? flags.inventory : (env.AMBIENTCTL_INVENTORY?.split(",").filter((s) => s !== "") ?? []);
  const localConfig = flags.localConfig ?? env.AMBIENTCTL_LOCAL_CONFIG;
  let ctx: CliContext;
  if (ctxPath !== undefined && ctxPath !== "") {
    ctx = readContextFile(ctxPath);
  } else {
    const netns = flags.netns ?? env.AMBIENTCTL_NETNS;
    const admin = urlOf(flags.admin ?? env.AMBIENTCTL_ZTUNNEL_ADMIN ?? DEFAULTS.ztunnelAdmin, "--admin");
    const host = new URL(admin).hostname;
    ctx = {
      nodes: [
        {
          name: netns ?? "local",
          netns: netns === "" ? undefined : netns,
          ztunnelAdmin: admin,
          ztunnelReadiness: `http://${host}:15021`,
          ztunnelStats: `http://${host}:15020`,
          agent: urlOf(flags.agent ?? env.AMBIENTCTL_AGENT ?? DEFAULTS.agent, "--agent"),
          inventory: undefined,
        },
      ],
      localConfig: undefined,
    };
  }
  if (inventories.length > 0) {
    // Explicit inventories replace those of the context (one per node, in order).
    ctx.nodes.forEach((n, i) => (n.inventory = inventories[i]));
    for (const extra of inventories.slice(ctx.nodes.length)) {
      ctx.nodes.push({ ...ctx.nodes[0]!, name: extra, inventory: extra });
    }
  }
  if (localConfig !== undefined && localConfig !== "") ctx.localConfig = localConfig;
  if (flags.node !== undefined) {
    const n = ctx.nodes.filter((x) => x.name === flags.node);
    if (n.length === 0) throw new UsageError(`no node "${flags.node}" (known: ${ctx.nodes.map((x) => x.name).join(", ")})`);
    ctx.nodes = n;
  }
  return ctx;
}

export function readContextFile(path: string): CliContext {
  let doc: unknown;
  try {
    doc = parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new UsageError(`cannot read context ${path}: ${errorMessage(err)} (a kept demo prints its path; or drop --context)`);
  }
  const root = typeof doc === "object" && doc !== null ? (doc as Record<string, unknown>) : {};
  const list = Array.isArray(root.nodes) ? (root.nodes as unknown[]) : [];
  if (list.length === 0) throw new UsageError(`context ${path} lists no nodes`);
  const s = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
  const nodes = list.map((raw, i): NodeTarget => {
    const n = typeof raw === "object" && raw !== null ? (raw as Record<string, unknown>) : {};
    return {
      name: s(n.name) ?? `node${i}`,
      netns: s(n.netns),
      ztunnelAdmin: urlOf(s(n.ztunnelAdmin) ?? DEFAULTS.ztunnelAdmin, `${path}: nodes[${i}].ztunnelAdmin`),
      ztunnelReadiness: urlOf(s(n.ztunnelReadiness) ?? DEFAULTS.ztunnelReadiness, `${path}: nodes[${i}].ztunnelReadiness`),
      ztunnelStats: urlOf(s(n.ztunnelStats) ?? DEFAULTS.ztunnelStats, `${path}: nodes[${i}].ztunnelStats`),
      agent: urlOf(s(n.agent) ?? DEFAULTS.agent, `${path}: nodes[${i}].agent`),
      inventory: s(n.inventory),
    };
  });
  return { nodes, localConfig: s(root.localConfig) };
}
