// The kubeconfig the plugin uses to read pods and namespaces: the agent's own service account
// token and CA, written as JSON (valid YAML) so the plugin parses it without a YAML library.
export interface PluginKubeSource {
  /** API server URL, e.g. https://10.96.0.1:443 (from KUBERNETES_SERVICE_HOST/PORT). */
  server: string;
  /** Projected service-account token; re-read on every reconcile (it rotates). */
  tokenFile: string;
  caFile?: string;
  insecureSkipTlsVerify?: boolean;
}

export const PLUGIN_KUBECONFIG_NAME = "ambient-cni-kubeconfig";

export function renderPluginKubeconfig(server: string, token: string, caPem: Buffer | undefined, insecure: boolean): string {
  const cluster: Record<string, unknown> = { server };
  if (caPem !== undefined) cluster["certificate-authority-data"] = caPem.toString("base64");
  if (insecure) cluster["insecure-skip-tls-verify"] = true;
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "local", cluster }],
    users: [{ name: "ambient-cni", user: { token } }],
    contexts: [{ name: "ambient-cni", context: { cluster: "local", user: "ambient-cni" } }],
    "current-context": "ambient-cni",
  };
  return JSON.stringify(doc, null, 2) + "\n";
}
