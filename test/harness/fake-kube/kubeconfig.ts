import { writeFile } from "node:fs/promises";
import { KubeConfig } from "@kubernetes/client-node";
import { stringify } from "yaml";

// Client configuration for the fake: plain http needs `insecure-skip-tls-verify` (client-node
// refuses http otherwise), authentication is a bearer token.

export interface KubeEndpoint {
  url: string;
  token: string | undefined;
}

const NAME = "fake-kube";

/** Kubeconfig document (as written to disk) pointing at the fake. */
export function kubeconfigDocument(server: KubeEndpoint): Record<string, unknown> {
  const user: Record<string, string> = {};
  if (server.token !== undefined) user["token"] = server.token;
  return {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: NAME, cluster: { server: server.url, "insecure-skip-tls-verify": true } }],
    users: [{ name: NAME, user }],
    contexts: [{ name: NAME, context: { cluster: NAME, user: NAME, namespace: "default" } }],
    "current-context": NAME,
    preferences: {},
  };
}

/** Writes a kubeconfig file for the fake (mode 0600, as kubectl does) and returns its path. */
export async function writeKubeconfig(server: KubeEndpoint, path: string): Promise<string> {
  await writeFile(path, stringify(kubeconfigDocument(server)), { mode: 0o600 });
  return path;
}

/** A loaded KubeConfig for the fake, ready for makeApiClient / Watch / makeInformer. */
export function kubeConfigFor(server: KubeEndpoint): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: NAME, server: server.url, skipTLSVerify: true }],
    users: [{ name: NAME, ...(server.token !== undefined ? { token: server.token } : {}) }],
    contexts: [{ name: NAME, cluster: NAME, user: NAME, namespace: "default" }],
    currentContext: NAME,
  });
  return kc;
}
