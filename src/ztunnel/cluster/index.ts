// Cluster mode (DESIGN §10): workload state from the Kubernetes API and certificates only for
// pods Kubernetes confirms on this node. See README.md in this folder.
export { selectMeshSource, CLUSTER_ENV_NAMES, SERVICE_ACCOUNT_DIR, type MeshSource, type MeshMode, type SelectOptions } from "./select.js";
// Types only: the KubeStateSource class loads the Kubernetes client, which file mode must not
// pay for by importing this index (import it from ./kube-source.js where it is needed).
export type { KubeStateSourceOptions, PodDirectory, PodListener } from "./kube-source.js";
export { IdentityGate, DEFAULT_CONFIRM_TIMEOUT_MS, type IdentityGateOptions } from "./identity-gate.js";
export { GatedIssuer, gateManager } from "./gated.js";
export { buildState, REDIRECTION_ANNOTATION, NETWORK_LABEL, SERVICE_NAME_LABEL, type ClusterObjects, type ModelOptions } from "./model.js";
export { SourceSelectionError, KubeSyncError, IdentityNotConfirmedError, IdentityNotLocalError } from "./errors.js";
