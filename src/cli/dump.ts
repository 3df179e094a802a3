// A lenient, typed reading of ztunnel's /config_dump: ambientctl shows what it finds and
// ignores fields it does not know, so it keeps working while ztunnel's dump grows.

export interface DumpListener {
  address: string;
  port: number;
  protocol: string;
  role: string;
  worker: number;
  mark: number;
  /** Open connections on this listener, when the dump reports them. */
  connections: number | undefined;
}

export interface DumpPod {
  uid: string;
  name: string;
  namespace: string;
  identity: string;
  state: string;
  lastError: string | undefined;
  listeners: DumpListener[];
  /** Open connections by "<worker>/<listener role>", when the dump lists them. */
  openByListener: Map<string, number> | undefined;
}

export interface DumpWorkload {
  uid: string;
  name: string;
  namespace: string;
  serviceAccount: string;
  workloadIps: string[];
  protocol: string;
  node: string;
}

export interface DumpCertificate {
  identity: string;
  notBefore: string;
  notAfter: string;
  /** ztunnel's state for it (Available, Initializing, Unavailable); "" from older ztunnels. */
  state: string;
  /** Why the last issuance failed, "" when it did not. */
  error: string;
}

export interface DumpCounters {
  opened: number;
  closed: number;
  failed: number;
  bytesSent: number;
  bytesReceived: number;
}

export interface ConfigDump {
  nodeName: string;
  trustDomain: string;
  zdsConnected: boolean | undefined;
  workloads: DumpWorkload[];
  pods: DumpPod[];
  certificates: DumpCertificate[];
  workers: Array<{ index: number; state: string; accepted: number; active: number }>;
  counters: Record<string, DumpCounters>;
}

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {};
}
function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
function str(v: unknown, dflt = ""): string {
  return typeof v === "string" ? v : dflt;
}
function num(v: unknown, dflt = 0): number {
  return typeof v === "number" && Number.isFinite(v) ? v : dflt;
}
function optNum(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

export function parseConfigDump(raw: unknown): ConfigDump {
  const root = obj(raw);
  const config = obj(root.config);
  const pods: DumpPod[] = Object.entries(obj(root.workloadState)).map(([uid, v]) => {
    const p = obj(v);
    const conns = Array.isArray(p.connections) ? p.connections : undefined;
    const openByListener = conns === undefined ? undefined : new Map<string, number>();
    for (const c of conns ?? []) {
      const o = obj(c);
      const k = `${num(o.worker, -1)}/${str(o.listener)}`;
      openByListener?.set(k, (openByListener.get(k) ?? 0) + 1);
    }
    return {
      uid,
      openByListener,
      name: str(p.name),
      namespace: str(p.namespace),
      identity: str(p.identity),
      state: str(p.state, "Unknown"),
      lastError: typeof p.lastError === "string" ? p.lastError : undefined,
      listeners: arr(p.listeners).map((l) => {
        const o = obj(l);
        return {
          address: str(o.address),
          port: num(o.port),
          protocol: str(o.protocol),
          role: str(o.role),
          worker: num(o.worker),
          mark: num(o.mark),
          connections: optNum(o.connections) ?? optNum(o.active),
        };
      }),
    };
  });
  const counters: Record<string, DumpCounters> = {};
  for (const [dir, v] of Object.entries(obj(root.counters))) {
    const c = obj(v);
    counters[dir] = { opened: num(c.opened), closed: num(c.closed), failed: num(c.failed), bytesSent: num(c.bytesSent), bytesReceived: num(c.bytesReceived) };
  }
  return {
    nodeName: str(config.nodeName),
    trustDomain: str(config.trustDomain),
    zdsConnected: typeof obj(root.zds).connected === "boolean" ? (obj(root.zds).connected as boolean) : undefined,
    workloads: arr(root.workloads).map((w) => {
      const o = obj(w);
      return {
        uid: str(o.uid),
        name: str(o.name),
        namespace: str(o.namespace),
        serviceAccount: str(o.serviceAccount),
        workloadIps: arr(o.workloadIps).map((x) => str(x)),
        protocol: str(o.protocol),
        node: str(o.node),
      };
    }),
    pods,
    certificates: arr(root.certificates).map((c) => {
      const o = obj(c);
      return { identity: str(o.identity), notBefore: str(o.notBefore), notAfter: str(o.notAfter), state: str(o.state), error: str(o.error) };
    }),
    workers: arr(root.workers).map((w) => {
      const o = obj(w);
      return { index: num(o.index), state: str(o.state), accepted: num(o.accepted), active: num(o.active) };
    }),
    counters,
  };
}

/** Sums of istio_tcp_* series in a Prometheus text exposition (all label sets). */
export function metricTotals(text: string, names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const name = m[1] ?? "";
    if (name in out) out[name] = (out[name] ?? 0) + Number(m[3]);
  }
  return out;
}

/** Value of one unlabelled (or first labelled) series, undefined when absent. */
export function metricValue(text: string, name: string): number | undefined {
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (m !== null && m[1] === name) return Number(m[3]);
  }
  return undefined;
}
