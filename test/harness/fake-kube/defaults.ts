import type { KubeObject } from "./types.js";
import { isPlainObject } from "./types.js";
import type { ResourceInfo } from "./resources.js";

// Defaulting the real API server (and its built-in admission) applies to every write, whether
// a client or a test's "cluster" made it, so objects look like they do on a cluster.

export interface DefaultingContext {
  allocateClusterIp(): string;
}

function record(obj: KubeObject, key: string): Record<string, unknown> {
  const v = obj[key];
  if (isPlainObject(v)) return v;
  const fresh: Record<string, unknown> = {};
  obj[key] = fresh;
  return fresh;
}

function setDefault(target: Record<string, unknown>, key: string, value: unknown): void {
  if (target[key] === undefined || target[key] === null || target[key] === "") target[key] = value;
}

export function applyDefaults(r: ResourceInfo, obj: KubeObject, ctx: DefaultingContext): void {
  switch (r.plural) {
    case "namespaces": {
      // Since Kubernetes 1.21 every namespace carries its own name as an immutable label.
      obj.metadata.labels = { ...(obj.metadata.labels ?? {}), "kubernetes.io/metadata.name": obj.metadata.name ?? "" };
      setDefault(record(obj, "status"), "phase", "Active");
      break;
    }
    case "pods": {
      const spec = record(obj, "spec");
      setDefault(spec, "serviceAccountName", typeof spec["serviceAccount"] === "string" ? spec["serviceAccount"] : "default");
      setDefault(spec, "serviceAccount", spec["serviceAccountName"]);
      setDefault(spec, "restartPolicy", "Always");
      setDefault(spec, "schedulerName", "default-scheduler");
      setDefault(record(obj, "status"), "phase", "Pending");
      break;
    }
    case "services": {
      const spec = record(obj, "spec");
      setDefault(spec, "type", "ClusterIP");
      if (spec["type"] !== "ExternalName") {
        setDefault(spec, "clusterIP", ctx.allocateClusterIp());
        if (!Array.isArray(spec["clusterIPs"])) spec["clusterIPs"] = [spec["clusterIP"]];
      }
      setDefault(spec, "sessionAffinity", "None");
      if (Array.isArray(spec["ports"])) {
        for (const p of spec["ports"]) {
          if (!isPlainObject(p)) continue;
          setDefault(p, "protocol", "TCP");
          setDefault(p, "targetPort", p["port"]);
        }
      }
      break;
    }
    case "secrets":
      if (typeof obj["type"] !== "string" || obj["type"] === "") obj["type"] = "Opaque";
      break;
    default:
      break;
  }
}
