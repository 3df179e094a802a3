import { certificates, eachNode, nodeRows, unreachable, workloads, type CommandOutput } from "./commands.js";
import type { NodeTarget } from "./context.js";
import { CommandFailedError, UsageError } from "./errors.js";
import { table } from "./format.js";
import { getJson, httpCall } from "./http.js";

// `ambientctl ztunnel-config <type>` in the shape of `istioctl ztunnel-config`: workloads,
// services, policies, certificates, connections, all, and log (show or set ztunnel's level).
// Rows come from each node's /config_dump; -o json|yaml print the same rows.

export const CONFIG_TYPES = ["workloads", "services", "policies", "certificates", "connections", "all", "log"] as const;
export type ConfigType = (typeof CONFIG_TYPES)[number];

export function parseConfigType(raw: string | undefined): ConfigType {
  const aliases: Record<string, ConfigType> = { workload: "workloads", service: "services", policy: "policies", certificate: "certificates", certs: "certificates", connection: "connections" };
  const t = raw === undefined ? undefined : (aliases[raw] ?? raw);
  if (t === undefined || !(CONFIG_TYPES as readonly string[]).includes(t)) {
    throw new UsageError(`ztunnel-config: ${raw === undefined ? "missing type" : `unknown type "${raw}"`} (one of ${CONFIG_TYPES.join(", ")})`);
  }
  return t as ConfigType;
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown, d = ""): string => (typeof v === "string" ? v : d);

async function rawDump(n: NodeTarget): Promise<Obj> {
  return obj(await getJson({ url: n.ztunnelAdmin, netns: n.netns }, "/config_dump"));
}

function address(v: unknown): string {
  const o = obj(v);
  return str(o.address, typeof v === "string" ? v : "?");
}

export async function services(nodes: NodeTarget[]): Promise<CommandOutput> {
  const r = await eachNode(nodes, rawDump);
  const rows = r.ok.flatMap(({ node, value }) =>
    arr(value.services).map((x) => {
      const s = obj(x);
      return {
        node: node.name,
        namespace: str(s.namespace),
        name: str(s.name),
        hostname: str(s.hostname),
        vips: arr(s.vips).map(address),
        ports: Object.entries(obj(s.ports)).map(([p, t]) => `${p}→${typeof t === "number" && t !== 0 ? t : p}`),
        waypoint: s.waypoint !== undefined && s.waypoint !== null ? "yes" : "None",
      };
    }),
  );
  return nodeRows(nodes, r, rows, ["namespace", "service name", "hostname", "service vip", "ports", "waypoint"], (s) => [s.namespace, s.name, s.hostname, s.vips.join(",") || "None", s.ports.join(",") || "-", s.waypoint]);
}

export async function policies(nodes: NodeTarget[]): Promise<CommandOutput> {
  const r = await eachNode(nodes, rawDump);
  const rows = r.ok.flatMap(({ node, value }) =>
    arr(value.policies).map((x) => {
      const p = obj(x);
      return { node: node.name, namespace: str(p.namespace), name: str(p.name), scope: str(p.scope), action: str(p.action), rules: arr(p.rules).length, dryRun: p.dryRun === true };
    }),
  );
  return nodeRows(nodes, r, rows, ["namespace", "policy name", "action", "scope", "rules", "dry run"], (p) => [p.namespace, p.name, p.action, p.scope, p.rules, p.dryRun ? "yes" : "no"]);
}

export async function connections(nodes: NodeTarget[]): Promise<CommandOutput> {
  const r = await eachNode(nodes, rawDump);
  const rows = r.ok.flatMap(({ node, value }) =>
    Object.values(obj(value.workloadState)).flatMap((x) => {
      const w = obj(x);
      return arr(w.connections).map((c) => {
        const o = obj(c);
        return {
          node: node.name,
          pod: `${str(w.namespace, "?")}/${str(w.name, "?")}`,
          direction: str(o.direction),
          listener: str(o.listener),
          source: str(o.src),
          destination: str(o.dst),
          sourceIdentity: str(o.srcIdentity),
          worker: typeof o.worker === "number" ? o.worker : null,
          ageMs: typeof o.ageMs === "number" ? o.ageMs : null,
        };
      });
    }),
  );
  return nodeRows(nodes, r, rows, ["pod", "direction", "listener", "source", "destination", "source identity", "worker", "age"], (c) => [c.pod, c.direction, c.listener, c.source, c.destination, c.sourceIdentity || "-", c.worker ?? "-", c.ageMs === null ? "-" : `${(c.ageMs / 1000).toFixed(1)}s`]);
}

/** `log`: ztunnel's current level per node; `log <level>` sets it (POST /logging?level=). */
export async function logLevel(nodes: NodeTarget[], level: string | undefined): Promise<CommandOutput> {
  const r = await eachNode(nodes, async (n) => {
    const a = await httpCall({ url: n.ztunnelAdmin, netns: n.netns }, level === undefined ? "/logging" : `/logging?level=${encodeURIComponent(level)}`, level === undefined ? "GET" : "POST", 3_000);
    if (a.status !== 200) throw new CommandFailedError(`${n.name}: ${a.body.trim()}`);
    return /current log level is (\S+)/.exec(a.body)?.[1] ?? a.body.trim();
  });
  const rows = r.ok.map(({ node, value }) => ({ node: node.name, level: value }));
  const refused = r.errors.find((e) => /level/i.test(e.error));
  const problem = refused !== undefined ? new CommandFailedError(refused.error) : unreachable(r.errors, r.ok.length === 0);
  return { data: rows, table: () => table(["node", "level"], rows.map((x) => [x.node, x.level])), ...(problem !== undefined ? { problem } : {}) };
}

export async function ztunnelConfig(nodes: NodeTarget[], type: ConfigType, args: string[]): Promise<CommandOutput> {
  if (type !== "log" && args.length > 0) throw new UsageError(`ztunnel-config ${type}: unexpected argument "${args[0]}"`);
  if (type === "log" && args.length > 1) throw new UsageError(`ztunnel-config log: unexpected argument "${args[1]}"`);
  switch (type) {
    case "workloads":
      return await workloads(nodes);
    case "services":
      return await services(nodes);
    case "policies":
      return await policies(nodes);
    case "certificates":
      return await certificates(nodes);
    case "connections":
      return await connections(nodes);
    case "log":
      return await logLevel(nodes, args[0]);
    case "all": {
      const parts = { workloads: await workloads(nodes), services: await services(nodes), policies: await policies(nodes), certificates: await certificates(nodes), connections: await connections(nodes) };
      const problem = Object.values(parts).find((p) => p.problem !== undefined)?.problem;
      return {
        data: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, v.data])),
        table: () => Object.entries(parts).map(([k, v]) => `${k.toUpperCase()}\n${v.table()}`).join("\n"),
        ...(problem !== undefined ? { problem } : {}),
      };
    }
  }
}
