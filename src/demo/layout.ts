import { createHash } from "node:crypto";

// What the demo runs: 2 nodes × 3 pods; on each node two pods of namespace `demo` (enrolled)
// and one of `legacy` (not). Pure data, shared by the run, the report and the tests.

export const NODES = 2;
export const MESH_NAMESPACE = "demo";
export const LEGACY_NAMESPACE = "legacy";
export const TRUST_DOMAIN = "cluster.local";
/** The demo's one Service: only resolved by name (step "DNS"); its VIP is never dialled. */
export const BACKEND_SERVICE = { name: "backend", hostname: "backend.demo.svc.cluster.local", vip: "10.96.0.10" } as const;

export interface DemoPod {
  name: string;
  namespace: string;
  node: number;
  serviceAccount: string;
  uid: string;
}

export function nodeName(i: number): string {
  return `node${i}`;
}

export function podUid(namespace: string, name: string): string {
  const h = createHash("sha256").update(`${namespace}/${name}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function demoPods(): DemoPod[] {
  const out: DemoPod[] = [];
  for (let n = 0; n < NODES; n++) {
    for (const [namespace, app] of [[MESH_NAMESPACE, "frontend"], [MESH_NAMESPACE, "backend"], [LEGACY_NAMESPACE, "legacy"]] as const) {
      const name = `${app}-${n}`;
      out.push({ name, namespace, node: n, serviceAccount: app, uid: podUid(namespace, name) });
    }
  }
  return out;
}

export function podKey(p: { namespace: string; name: string }): string {
  return `${p.namespace}/${p.name}`;
}

/** Inventory of one node (the agent's LOCAL_INVENTORY_PATH): the namespaces and this node's pods. */
export function inventoryYaml(pods: readonly DemoPod[], node: number, ips: ReadonlyMap<string, string>): string {
  const lines = ["# cluster-free node inventory: what the agent would otherwise watch in Kubernetes", "namespaces:", `  - name: ${MESH_NAMESPACE}`, `  - name: ${LEGACY_NAMESPACE}`, "pods:"];
  for (const p of pods.filter((x) => x.node === node)) {
    lines.push(`  - { name: ${p.name}, namespace: ${p.namespace}, uid: ${p.uid}, serviceAccount: ${p.serviceAccount}, labels: { app: ${p.serviceAccount} }, ips: [${ips.get(podKey(p)) ?? ""}] }`);
  }
  return `${lines.join("\n")}\n`;
}

/** ztunnel's local config shared by every node (what istiod would publish): nothing enrolled yet. */
export function localConfigYaml(pods: readonly DemoPod[], ips: ReadonlyMap<string, string>): string {
  const lines = ["# ztunnel local config (LOCAL_XDS_PATH): workloads as istiod would publish them", "workloads:"];
  for (const p of pods) {
    lines.push(
      `  - uid: ${p.uid}`,
      `    name: ${p.name}`,
      `    namespace: ${p.namespace}`,
      `    serviceAccount: ${p.serviceAccount}`,
      `    workloadIps: ["${ips.get(podKey(p)) ?? ""}"]`,
      `    protocol: TCP`,
      `    node: ${nodeName(p.node)}`,
    );
  }
  // A Service, so a mesh name resolves inside the pods (ztunnel's DNS proxy answers its VIP).
  lines.push(
    "services:",
    `  - name: ${BACKEND_SERVICE.name}`,
    `    namespace: ${MESH_NAMESPACE}`,
    `    hostname: ${BACKEND_SERVICE.hostname}`,
    `    vips: ["${BACKEND_SERVICE.vip}"]`,
    `    ports: { "8080": 8080 }`,
  );
  return `${lines.join("\n")}\n`;
}
