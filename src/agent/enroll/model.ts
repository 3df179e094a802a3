// What the agent knows of a pod, whatever the source (Kubernetes informer or local inventory).
export interface PodView {
  uid: string;
  name: string;
  namespace: string;
  serviceAccount: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  hostNetwork: boolean;
  /** Pod IPs known to the source (Kubernetes status.podIPs, inventory `ips`); may be empty. */
  ips: string[];
  /** Succeeded/Failed: the pod's containers are done and it leaves the mesh. */
  terminal: boolean;
  /** The source needs IPs before the pod can be enrolled from it (Kubernetes: a pod without
   *  IPs has no sandbox yet; its CNI ADD will come). */
  requiresIps: boolean;
}

export const REDIRECTION_ANNOTATION = "ambient.istio.io/redirection";
export type RedirectionState = "pending" | "enabled";
