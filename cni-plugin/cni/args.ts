// CNI_ARGS is "K1=V1;K2=V2" (CNI CONVENTIONS.md). kubelet/containerd pass K8S_POD_NAME,
// K8S_POD_NAMESPACE, K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID; podman passes only K8S_POD_NAME.
// A runtime never writes a malformed CNI_ARGS, so garbage there is reported, not guessed
// around: the ADD of a pod that could be enrolled fails closed on it (commands.ts).
export interface PodArgs {
  podName: string;
  podNamespace: string;
  podUid: string;
  infraContainerId: string;
  /** What is wrong with the pod's identity (K8S_POD_NAME / K8S_POD_NAMESPACE); empty = fine. */
  identityProblems: string[];
  /** Other malformed pairs (no "=", empty key). */
  otherProblems: string[];
  /** K8S_POD_NAMESPACE parsed cleanly (its value can be trusted even when the name cannot). */
  namespaceSound: boolean;
}

const IDENTITY_KEYS = ["K8S_POD_NAME", "K8S_POD_NAMESPACE"] as const;
const ALL_KEYS = [...IDENTITY_KEYS, "K8S_POD_UID", "K8S_POD_INFRA_CONTAINER_ID"];
// Pod names: Kubernetes DNS subdomains, and podman's container names (letters, '_' too).
const POD_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/;
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function parseCniArgs(raw: string): Map<string, string> {
  return parseCniArgsStrict(raw).args;
}

/** Every key=value pair, plus the pairs that are not one. */
export function parseCniArgsStrict(raw: string): { args: Map<string, string>; malformed: string[]; conflicting: string[] } {
  const args = new Map<string, string>();
  const malformed: string[] = [];
  const conflicting: string[] = [];
  for (const pair of raw.split(";")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      malformed.push(pair);
      continue;
    }
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    const prev = args.get(key);
    if (prev !== undefined && prev !== value) conflicting.push(key);
    args.set(key, value);
  }
  return { args, malformed, conflicting };
}

function show(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

export function podArgs(raw: string): PodArgs {
  const { args, malformed, conflicting } = parseCniArgsStrict(raw);
  const identityProblems: string[] = [];
  const otherProblems: string[] = [];
  for (const m of malformed) {
    const near = ALL_KEYS.find((k) => m.trim().toUpperCase().startsWith(k));
    (near !== undefined && (IDENTITY_KEYS as readonly string[]).includes(near) ? identityProblems : otherProblems).push(`${show(m)} is not KEY=VALUE`);
  }
  for (const key of args.keys()) {
    // " K8S_POD_NAME", "k8s_pod_name": meant as the identity, but not the key a runtime writes.
    const canonical = (IDENTITY_KEYS as readonly string[]).find((k) => k === key.trim().toUpperCase());
    if (canonical !== undefined && canonical !== key) identityProblems.push(`key ${show(key)} is not ${canonical}`);
  }
  for (const key of conflicting) {
    ((IDENTITY_KEYS as readonly string[]).includes(key) ? identityProblems : otherProblems).push(`${key} is given twice with different values`);
  }
  const podName = args.get("K8S_POD_NAME") ?? "";
  const podNamespace = args.get("K8S_POD_NAMESPACE") ?? "";
  if (args.has("K8S_POD_NAME") && !POD_NAME.test(podName)) identityProblems.push(`K8S_POD_NAME=${show(podName)} is not a pod name`);
  if (args.has("K8S_POD_NAMESPACE") && !NAMESPACE.test(podNamespace)) identityProblems.push(`K8S_POD_NAMESPACE=${show(podNamespace)} is not a namespace name`);
  const namespaceSound = !identityProblems.some((p) => p.includes("K8S_POD_NAMESPACE")) && (podNamespace === "" || NAMESPACE.test(podNamespace));
  return {
    namespaceSound,
    podName,
    podNamespace,
    podUid: args.get("K8S_POD_UID") ?? "",
    infraContainerId: args.get("K8S_POD_INFRA_CONTAINER_ID") ?? "",
    identityProblems,
    otherProblems,
  };
}
