import { DEFAULT_SELECTORS, type EnablementSelector } from "../../cni-contract/index.js";

// Our entry in the host's conflist: the plugin's config fields (Istio's names).
export const PLUGIN_TYPE = "ambient-cni";

export interface PluginEntryOptions {
  runDir: string;
  excludeNamespaces?: string[];
  /** The agent's own namespace: its pods are never enrolled. */
  podNamespace?: string;
  logLevel?: "debug" | "info" | "warn" | "error" | "none";
  enablementSelectors?: EnablementSelector[];
  kubeconfigPath?: string;
}

export type PluginEntry = Record<string, unknown> & { type: string };

export function pluginEntry(opts: PluginEntryOptions, pluginType = PLUGIN_TYPE): PluginEntry {
  const entry: PluginEntry = {
    type: pluginType,
    cni_agent_run_dir: opts.runDir,
    ambient_enabled: true,
    exclude_namespaces: opts.excludeNamespaces ?? ["kube-system"],
    pod_namespace: opts.podNamespace ?? "",
    plugin_log_level: opts.logLevel ?? "info",
  };
  // Always written: the plugin then decides exactly as the agent does, whatever its defaults.
  entry.enablement_selectors = opts.enablementSelectors ?? DEFAULT_SELECTORS;
  if (opts.kubeconfigPath !== undefined) entry.kubeconfig = opts.kubeconfigPath;
  return entry;
}
