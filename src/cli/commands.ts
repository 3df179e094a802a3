import { errorMessage } from "../shared/errors.js";
import type { NodeTarget } from "./context.js";
import { metricValue, parseConfigDump, type ConfigDump, type DumpCounters } from "./dump.js";
import { CommandFailedError, UnreachableError } from "./errors.js";
import { hexMark, table } from "./format.js";
import { formatPodStart, histogramSummary, POD_START_HISTOGRAM, POD_START_LABEL, type HistogramSummary } from "./histogram.js";
import { getJson, httpCall } from "./http.js";

// The read-only commands. Each returns rows (for -o json|yaml) and a table renderer; reaching a
// node is per node, so one unreachable node does not hide the others (the exit code says 3).

export interface CommandOutput {
  data: unknown;
  table: () => string;
  /** Set when some node could not be reached (exit code 3) or the thing asked is not OK (1). */
  problem?: UnreachableError | CommandFailedError;
}

function nodeOf(n: NodeTarget): { url: string; netns: string | undefined } {
  return { url: n.ztunnelAdmin, netns: n.netns };
}

export async function fetchDump(n: NodeTarget): Promise<ConfigDump> {
  return parseConfigDump(await getJson(nodeOf(n), "/config_dump"));
}

export interface PerNode<T> {
  ok: Array<{ node: NodeTarget; value: T }>;
  errors: Array<{ node: string; error: string }>;
}

export async function eachNode<T>(nodes: NodeTarget[], fn: (n: NodeTarget) => Promise<T>): Promise<PerNode<T>> {
  const res = await Promise.all(nodes.map(async (node) => {
    try {
      return { node, value: await fn(node) };
    } catch (err) {
      return { node, error: errorMessage(err) };
    }
  }));
  const out: PerNode<T> = { ok: [], errors: [] };
  for (const r of res) {
    if ("value" in r) out.ok.push({ node: r.node, value: r.value as T });
    else out.errors.push({ node: r.node.name, error: r.error });
  }
  return out;
}

export function unreachable(errors: PerNode<unknown>["errors"], allFailed: boolean): UnreachableError | undefined {
  if (errors.length === 0) return undefined;
  const text = errors.map((e) => `${e.node}: ${e.error}`).join("; ");
  return new UnreachableError(`${allFailed ? "" : "some nodes unreachable: "}${text}`);
}

export const multi = (nodes: NodeTarget[]): boolean => nodes.length > 1;

/**
 * A per-node listing: the rows as data, a table with a node column when several nodes were
 * asked, and the unreachable nodes as the problem.
 */
export function nodeRows<R extends { node: string }>(nodes: NodeTarget[], r: PerNode<unknown>, rows: R[], headers: readonly string[], cells: (row: R) => Array<string | number>): CommandOutput {
  const problem = unreachable(r.errors, r.ok.length === 0);
  return {
    data: rows,
    table: () => table([...(multi(nodes) ? ["node"] : []), ...headers], rows.map((row) => [...(multi(nodes) ? [row.node] : []), ...cells(row)])),
    ...(problem !== undefined ? { problem } : {}),
  };
}

export async function workloads(nodes: NodeTarget[]): Promise<CommandOutput> {
  const r = await eachNode(nodes, fetchDump);
  const rows = r.ok.flatMap(({ node, value }) => {
    const states = new Map(value.pods.map((p) => [p.uid, p.state]));
    return value.workloads
      .filter((w) => !multi(nodes) || w.node === "" || w.node === value.nodeName || states.has(w.uid))
      .map((w) => ({ node: node.name, namespace: w.namespace, name: w.name, ips: w.workloadIps, protocol: w.protocol, serviceAccount: w.serviceAccount, workloadNode: w.node, captured: states.get(w.uid) ?? "" }));
  });
  return nodeRows(nodes, r, rows, ["namespace", "pod name", "address", "protocol", "service account", "workload node", "in-pod"], (w) => [w.namespace, w.name, w.ips.join(",") || "None", w.protocol, w.serviceAccount, w.workloadNode || "None", w.captured || "-"]);
}

export interface ListenerRow {
  node: string;
  namespace: string;
  pod: string;
  state: string;
  worker: number;
  role: string;
  address: string;
  protocol: string;
  mark: string;
  connections: number | null;
}

export async function listeners(nodes: NodeTarget[], podFilter: string | undefined): Promise<CommandOutput> {
  const r = await eachNode(nodes, async (n) => {
    const dump = await fetchDump(n);
    const kernel: Record<string, string> = {};
    for (const p of dump.pods) {
      const key = `${p.namespace}/${p.name}`;
      if (podFilter !== undefined && key !== podFilter) continue;
      // The kernel view (sockets as the pod's netns sees them), when this ztunnel serves it.
      const k = await httpCall(nodeOf(n), `/listeners?pod=${encodeURIComponent(key)}`).catch(() => undefined);
      if (k !== undefined && k.status === 200) kernel[key] = k.body;
    }
    return { dump, kernel };
  });
  const rows: ListenerRow[] = [];
  const kernel: Record<string, unknown> = {};
  for (const { node, value } of r.ok) {
    for (const p of value.dump.pods) {
      const key = `${p.namespace}/${p.name}`;
      if (podFilter !== undefined && key !== podFilter) continue;
      const view = value.kernel[key] !== undefined ? parseMaybeJson(value.kernel[key]) : undefined;
      if (view !== undefined) kernel[`${node.name}:${key}`] = view;
      const established = establishedByPort(view);
      if (p.listeners.length === 0) rows.push({ node: node.name, namespace: p.namespace, pod: p.name || p.uid, state: p.state, worker: -1, role: "-", address: "-", protocol: "-", mark: "-", connections: null });
      for (const l of p.listeners) {
        rows.push({ node: node.name, namespace: p.namespace, pod: p.name, state: p.state, worker: l.worker, role: l.role, address: `${l.address.includes(":") ? `[${l.address}]` : l.address}:${l.port}`, protocol: l.protocol, mark: hexMark(l.mark), connections: l.connections ?? (p.openByListener !== undefined ? (p.openByListener.get(`${l.worker}/${l.role}`) ?? 0) : established.get(l.port)) ?? null });
      }
    }
  }
  let problem: UnreachableError | CommandFailedError | undefined = unreachable(r.errors, r.ok.length === 0);
  if (problem === undefined && podFilter !== undefined && rows.length === 0) {
    problem = new CommandFailedError(`no ztunnel serves pod ${podFilter} (is it enrolled? see: ambientctl workloads)`);
  }
  return {
    data: { listeners: rows, ...(Object.keys(kernel).length > 0 ? { kernel } : {}) },
    table: () => {
      let out = table(
        [...(multi(nodes) ? ["node"] : []), "namespace", "pod", "state", "worker", "role", "address", "protocol", "mark", "conns"],
        rows.map((x) => [...(multi(nodes) ? [x.node] : []), x.namespace, x.pod, x.state, x.worker < 0 ? "-" : x.worker, x.role, x.address, x.protocol, x.mark, x.connections ?? "-"]),
      );
      for (const [k, v] of Object.entries(kernel)) out += `\nkernel view of ${k} (sockets in the pod's netns):\n${kernelTable(v)}`;
      return out;
    },
    ...(problem !== undefined ? { problem } : {}),
  };
}

type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {});

function endpoint(v: unknown): string {
  const o = asObj(v);
  const a = typeof o.address === "string" ? o.address : "*";
  return `${a.includes(":") ? `[${a}]` : a}:${typeof o.port === "number" ? o.port : "*"}`;
}

/**
 * Established sockets per local port in the kernel view: connections a pod listener accepted
 * (REDIRECT keeps the listener's port as the local port). Per port, summed over workers.
 */
function establishedByPort(view: unknown): Map<number, number> {
  const out = new Map<number, number>();
  const sockets = asObj(asObj(view).kernel).sockets;
  if (!Array.isArray(sockets)) return out;
  for (const x of sockets) {
    const o = asObj(x);
    const port = asObj(o.local).port;
    if (o.state === "ESTAB" && typeof port === "number") out.set(port, (out.get(port) ?? 0) + 1);
  }
  return out;
}

/** The kernel's socket table of a pod (ztunnel's /listeners?pod=), one line per socket. */
function kernelTable(view: unknown): string {
  const sockets = asObj(asObj(view).kernel).sockets;
  if (!Array.isArray(sockets)) return `${typeof view === "string" ? view : JSON.stringify(view, null, 2)}\n`;
  const num = (v: unknown, unit = ""): string => (typeof v === "number" ? `${v}${unit}` : "-");
  return table(
    ["state", "local", "peer", "mark", "recv-q", "send-q", "rtt", "retrans"],
    sockets.map((x: unknown) => {
      const o = asObj(x);
      // TCP_INFO: smoothed rtt, and retransmitted segments in total (now unacked in brackets).
      const retrans = typeof o.totalRetransmits === "number" ? `${o.totalRetransmits}${typeof o.retransmits === "number" && o.retransmits > 0 ? ` (${o.retransmits})` : ""}` : "-";
      return [String(o.state ?? "?"), endpoint(o.local), endpoint(o.peer), typeof o.mark === "number" ? hexMark(o.mark) : "-", String(o.recvQ ?? "-"), String(o.sendQ ?? "-"), num(o.rttMs, "ms"), retrans];
    }),
  );
}

function parseMaybeJson(s: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return s.trimEnd();
  }
}

export async function certificates(nodes: NodeTarget[]): Promise<CommandOutput> {
  const r = await eachNode(nodes, fetchDump);
  const now = Date.now();
  const rows = r.ok.flatMap(({ node, value }) =>
    value.certificates.map((c) => {
      const valid = Date.parse(c.notBefore) <= now && now < Date.parse(c.notAfter);
      // Issued and in its validity: Active; otherwise what ztunnel says (Initializing, Unavailable: why).
      const state = c.notBefore !== "" && valid ? "Active" : c.state !== "" && c.state !== "Available" ? `${c.state}${c.error !== "" ? `: ${c.error}` : ""}` : "Expired";
      return { node: node.name, identity: c.identity, notBefore: c.notBefore, notAfter: c.notAfter, valid, state };
    }),
  );
  return nodeRows(nodes, r, rows, ["certificate name", "state", "not before", "not after"], (c) => [c.identity, c.state, c.notBefore, c.notAfter]);
}

export interface NodeStatus {
  node: string;
  agentHealthy: boolean | null;
  agentReady: boolean | null;
  agentZtunnelConnected: boolean | null;
  /** Pods the agent has redirected but ztunnel has not acknowledged yet (enrolled_pods{state="pending"}). */
  agentPendingPods: number | null;
  /** What the agent's /readyz names (e.g. pods whose rules or listeners the verifier could not repair). */
  agentNotReady: string[];
  /** CNI ADD → ztunnel Ack per pod (the agent's istio_cni_pod_ready_seconds). */
  podReady: HistogramSummary | null;
  ztunnelReady: boolean | null;
  ztunnelPending: string[];
  zdsConnected: boolean | null;
  pods: { up: number; pending: number };
  counters: Record<string, DumpCounters> | null;
  errors: string[];
}

async function probe(url: string, netns: string | undefined, path: string): Promise<{ status: number; body: string } | string> {
  try {
    return await httpCall({ url, netns }, path, "GET", 3_000);
  } catch (err) {
    return errorMessage(err);
  }
}

export async function nodeStatus(n: NodeTarget): Promise<NodeStatus> {
  const s: NodeStatus = { node: n.name, agentHealthy: null, agentReady: null, agentZtunnelConnected: null, agentPendingPods: null, agentNotReady: [], podReady: null, ztunnelReady: null, ztunnelPending: [], zdsConnected: null, pods: { up: 0, pending: 0 }, counters: null, errors: [] };
  const [healthz, readyz, metrics, ready, dump] = await Promise.all([
    probe(n.agent, n.netns, "/healthz"),
    probe(n.agent, n.netns, "/readyz"),
    probe(n.agent, n.netns, "/metrics"),
    probe(n.ztunnelReadiness, n.netns, "/healthz/ready"),
    fetchDump(n).catch((err: unknown) => errorMessage(err)),
  ]);
  if (typeof healthz === "string") s.errors.push(`agent ${n.agent}: ${healthz}`);
  else s.agentHealthy = healthz.status === 200;
  if (typeof readyz !== "string") {
    s.agentReady = readyz.status === 200;
    if (!s.agentReady) s.agentNotReady = readyz.body.split("\n").filter((l) => l.startsWith("- ")).map((l) => l.slice(2));
  }
  if (typeof metrics !== "string" && metrics.status === 200) {
    const v = metricValue(metrics.body, "ztunnel_connected");
    if (v !== undefined) s.agentZtunnelConnected = v > 0;
    const pending = /^enrolled_pods\{[^}]*state="pending"[^}]*\}\s+(\S+)/m.exec(metrics.body);
    s.agentPendingPods = pending !== null ? Number(pending[1]) : 0;
    s.podReady = histogramSummary(metrics.body, POD_START_HISTOGRAM) ?? null;
  }
  if (typeof ready === "string") s.errors.push(`ztunnel readiness ${n.ztunnelReadiness}: ${ready}`);
  else {
    s.ztunnelReady = ready.status === 200;
    if (!s.ztunnelReady) s.ztunnelPending = ready.body.split("\n").filter((l) => l.startsWith("- ")).map((l) => l.slice(2));
  }
  if (typeof dump === "string") s.errors.push(`ztunnel admin ${n.ztunnelAdmin}: ${dump}`);
  else {
    s.zdsConnected = dump.zdsConnected ?? null;
    s.pods = { up: dump.pods.filter((p) => p.state === "Up").length, pending: dump.pods.filter((p) => p.state !== "Up").length };
    s.counters = dump.counters;
  }
  return s;
}

export async function status(nodes: NodeTarget[]): Promise<CommandOutput> {
  const rows = await Promise.all(nodes.map(nodeStatus));
  const yn = (b: boolean | null): string => (b === null ? "unreachable" : b ? "yes" : "NO");
  const allUnreachable = rows.every((r) => r.agentHealthy === null && r.ztunnelReady === null);
  const someUnreachable = rows.some((r) => r.agentHealthy === null || r.ztunnelReady === null);
  const unhealthy = rows.filter((r) => r.agentHealthy === false || r.agentReady === false || r.ztunnelReady === false || r.zdsConnected === false || r.pods.pending > 0 || (r.agentPendingPods ?? 0) > 0);
  let problem: UnreachableError | CommandFailedError | undefined;
  if (allUnreachable || someUnreachable) {
    const down = rows.filter((r) => r.errors.length > 0).map((r) => r.node);
    problem = new UnreachableError(`cannot reach ${down.join(", ")} (details above; is the node running? endpoints in another netns need --netns or --context)`);
  }
  else if (unhealthy.length > 0) problem = new CommandFailedError(`not healthy: ${unhealthy.map((r) => r.node).join(", ")}`);
  return {
    data: rows,
    table: () => {
      let out = table(
        ["node", "agent healthy", "agent ready", "agent→ztunnel", "agent pending", "ztunnel ready", "zds connected", "pods up", "pods pending"],
        rows.map((r) => [r.node, yn(r.agentHealthy), yn(r.agentReady), yn(r.agentZtunnelConnected), r.agentPendingPods ?? "-", yn(r.ztunnelReady), yn(r.zdsConnected), r.pods.up, r.pods.pending]),
      );
      for (const r of rows) {
        if (r.podReady !== null && r.podReady.count > 0) out += `${r.node}: ${POD_START_LABEL}: ${formatPodStart(r.podReady)}\n`;
        for (const p of r.agentNotReady) out += `${r.node}: agent not ready: ${p}\n`;
        for (const p of r.ztunnelPending) out += `${r.node}: pending: ${p}\n`;
        for (const e of r.errors) out += `${r.node}: ${e}\n`;
      }
      return out;
    },
    ...(problem !== undefined ? { problem } : {}),
  };
}
