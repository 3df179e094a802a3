import type { KubeObject } from "./types.js";
import { cloneJson } from "./types.js";
import type { ResourceInfo } from "./resources.js";

// What the API server's per-resource REST strategies do to a client's write (HTTP path only;
// the test's store API writes as "the cluster" and may set status freely):
// - create: status is not the client's to set for pods, services and namespaces;
// - update/patch of the main resource keeps the stored status;
// - update/patch of `status` keeps the stored spec (metadata such as annotations does change:
//   Istio's CNI agent relies on that when it annotates pods through pods/status).

export function prepareForCreate(r: ResourceInfo, obj: KubeObject): void {
  switch (r.plural) {
    case "pods":
      obj["status"] = { phase: "Pending" };
      break;
    case "services":
      obj["status"] = { loadBalancer: {} };
      break;
    case "namespaces":
      obj["status"] = { phase: "Active" };
      break;
    default:
      break;
  }
}

export function prepareForUpdate(r: ResourceInfo, next: KubeObject, old: KubeObject, subresource: string | undefined): KubeObject {
  if (!r.statusSubresource) return next;
  if (subresource === "status") {
    const out: KubeObject = { ...cloneJson(old), metadata: next.metadata };
    if (next["status"] === undefined) delete out["status"];
    else out["status"] = next["status"];
    // pods/status may not touch ownerReferences (old kubelets corrupted them).
    if (r.plural === "pods") {
      if (old.metadata["ownerReferences"] === undefined) delete out.metadata["ownerReferences"];
      else out.metadata["ownerReferences"] = old.metadata["ownerReferences"];
    }
    return out;
  }
  const out: KubeObject = { ...next };
  if (old["status"] === undefined) delete out["status"];
  else out["status"] = cloneJson(old["status"]);
  return out;
}
