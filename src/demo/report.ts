import { metricTotals, type ConfigDump } from "../cli/dump.js";
import { hexMark, table } from "../cli/format.js";
import type { Transfer } from "./apps.js";

// What a person reads: listeners per pod, HBONE connections with identities (from the access
// log), metric totals, one access-log line.

export function listenersTable(dumps: ReadonlyArray<{ node: string; dump: ConfigDump }>): string {
  const rows: string[][] = [];
  for (const { node, dump } of dumps) {
    for (const p of [...dump.pods].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))) {
      const byPort = new Map<string, { role: string; protocol: string; mark: number; workers: number[] }>();
      for (const l of p.listeners) {
        const k = `${l.address}:${l.port}`;
        const e = byPort.get(k) ?? { role: l.role, protocol: l.protocol, mark: l.mark, workers: [] };
        e.workers.push(l.worker);
        byPort.set(k, e);
      }
      for (const [addr, e] of byPort) rows.push([node, `${p.namespace}/${p.name}`, p.identity, addr, e.role, e.protocol, hexMark(e.mark), e.workers.sort().join(",")]);
    }
  }
  return table(["node", "pod", "identity", "listen", "role", "protocol", "mark", "workers"], rows);
}

export function transfersTable(ts: readonly Transfer[]): string {
  return table(["from", "to", "sent", "answer", "time"], ts.map((t) => [t.from, t.to, `${t.bytes} B`, t.reply, `${t.ms} ms`]));
}

type Rec = Record<string, unknown>;
const s = (v: unknown): string => (typeof v === "string" ? v : v === undefined ? "" : String(v));

/** Inbound records on the destination's ztunnel carry both identities of an HBONE connection. */
export function hboneTable(records: ReadonlyArray<{ node: string; rec: Rec }>): string {
  const rows = records
    .filter(({ rec }) => rec.direction === "inbound" && s(rec["src.identity"]) !== "")
    .map(({ node, rec }) => [node, s(rec["src.addr"]), s(rec["src.identity"]), s(rec["dst.addr"]), s(rec["dst.identity"]), s(rec.bytes_sent), s(rec.bytes_recv)]);
  return table(["node", "client", "client identity (mTLS peer)", "destination", "server identity", "bytes sent", "bytes back"], rows);
}

export function connectionsTable(records: ReadonlyArray<{ node: string; rec: Rec }>): string {
  const rows = records.map(({ node, rec }) => [
    node,
    s(rec.direction),
    `${s(rec["src.namespace"]) || "?"}/${s(rec["src.workload"]) || s(rec["src.addr"])}`,
    `${s(rec["dst.namespace"]) || "?"}/${s(rec["dst.workload"]) || s(rec["dst.addr"])}`,
    // Outbound: tunnelled when it names an HBONE endpoint; inbound: when the peer proved an identity.
    s(rec["dst.hbone_addr"]) !== "" || (rec.direction === "inbound" && s(rec["src.identity"]) !== "") ? "HBONE (mTLS)" : "plaintext",
    s(rec.error) || "-",
  ]);
  return table(["node", "direction", "source", "destination", "transport", "error"], rows);
}

export const METRIC_NAMES = [
  "istio_tcp_connections_opened_total",
  "istio_tcp_connections_closed_total",
  "istio_tcp_sent_bytes_total",
  "istio_tcp_received_bytes_total",
  "istio_tcp_connections_failed_total",
] as const;

export function metricsTable(perNode: ReadonlyArray<{ node: string; metrics: string | undefined; dump: ConfigDump }>): { text: string; source: string } {
  if (perNode.every((p) => p.metrics !== undefined)) {
    const rows = perNode.map((p) => {
      const t = metricTotals(p.metrics ?? "", METRIC_NAMES);
      return [p.node, ...METRIC_NAMES.map((n) => String(t[n] ?? 0))];
    });
    return { text: table(["node", "opened", "closed", "sent bytes", "received bytes", "failed"], rows), source: "Prometheus /metrics on :15020" };
  }
  const rows = perNode.flatMap((p) =>
    Object.entries(p.dump.counters).map(([dir, c]) => [p.node, dir, String(c.opened), String(c.closed), String(c.bytesSent), String(c.bytesReceived), String(c.failed)]),
  );
  return { text: table(["node", "direction", "opened", "closed", "sent bytes", "received bytes", "failed"], rows), source: "/config_dump counters (:15020 not served by this ztunnel)" };
}
