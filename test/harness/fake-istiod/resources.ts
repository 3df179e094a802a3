import { isIP } from "node:net";

// Builders for the resources a test pushes, in the wire shape (snake_case, raw address bytes).

export function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split(".").map(Number));
  const [head = "", tail = ""] = ip.split("::");
  const h = head === "" ? [] : head.split(":");
  const t = tail === "" ? [] : tail.split(":");
  const groups = ip.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t] : h;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(Number.parseInt(g, 16), i * 2));
  return b;
}

export interface FakeWorkload {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly ips: readonly string[];
  readonly node: string;
  readonly hbone?: boolean;
  readonly services?: Record<string, Array<{ servicePort: number; targetPort: number }>>;
  readonly authorizationPolicies?: readonly string[];
  readonly waypoint?: { ip: string; port?: number };
  readonly extra?: Record<string, unknown>;
}

export function workloadAddress(w: FakeWorkload): Record<string, unknown> {
  return {
    workload: {
      uid: w.uid,
      name: w.name,
      namespace: w.namespace,
      service_account: w.serviceAccount,
      trust_domain: "cluster.local",
      addresses: w.ips.map(ipBytes),
      tunnel_protocol: w.hbone === false ? "NONE" : "HBONE",
      node: w.node,
      cluster_id: "Kubernetes",
      canonical_name: w.name,
      workload_name: w.name,
      services: Object.fromEntries(
        Object.entries(w.services ?? {}).map(([k, ports]) => [k, { ports: ports.map((p) => ({ service_port: p.servicePort, target_port: p.targetPort })) }]),
      ),
      authorization_policies: [...(w.authorizationPolicies ?? [])],
      ...(w.waypoint !== undefined ? { waypoint: { address: { network: "", address: ipBytes(w.waypoint.ip) }, hbone_mtls_port: w.waypoint.port ?? 15008 } } : {}),
      ...(w.extra ?? {}),
    },
  };
}

export interface FakeService {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly vips: readonly string[];
  readonly ports: Array<{ servicePort: number; targetPort: number }>;
  readonly waypoint?: { ip: string; port?: number };
}

export function serviceAddress(s: FakeService): Record<string, unknown> {
  return {
    service: {
      name: s.name,
      namespace: s.namespace,
      hostname: s.hostname,
      addresses: s.vips.map((v) => ({ network: "", address: ipBytes(v) })),
      ports: s.ports.map((p) => ({ service_port: p.servicePort, target_port: p.targetPort })),
      ...(s.waypoint !== undefined ? { waypoint: { address: { network: "", address: ipBytes(s.waypoint.ip) }, hbone_mtls_port: s.waypoint.port ?? 15008 } } : {}),
    },
  };
}
