// CNI_ARGS is "K1=V1;K2=V2" (CNI CONVENTIONS.md). kubelet/containerd pass K8S_POD_NAME,
// K8S_POD_NAMESPACE, K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID; podman passes only K8S_POD_NAME.
export interface PodArgs {
  podName: string;
  podNamespace: string;
  podUid: string;
  infraContainerId: string;
}

export function parseCniArgs(raw: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of raw.split(";")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) continue; // malformed pairs are ignored like IgnoreUnknown would
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

export function podArgs(raw: string): PodArgs {
  const m = parseCniArgs(raw);
  return {
    podName: m.get("K8S_POD_NAME") ?? "",
    podNamespace: m.get("K8S_POD_NAMESPACE") ?? "",
    podUid: m.get("K8S_POD_UID") ?? "",
    infraContainerId: m.get("K8S_POD_INFRA_CONTAINER_ID") ?? "",
  };
}
