// Fake Kubernetes API server for tests; see README.md in this folder.
export { FakeKubeServer, type FakeKubeOptions, type FailPath, type ListenSpec } from "./server.js";
export { ObjectStore, type ListFilter, type DeletePreconditions } from "./store.js";
export { kubeConfigFor, kubeconfigDocument, writeKubeconfig, type KubeEndpoint } from "./kubeconfig.js";
export { rbacResource, rbacUsage, rbacUsesOf, type RbacUse, type RequestRecord, type RequestPredicate, type RbacVerb } from "./requests.js";
export { RESOURCES, resourceInfo, type ResourceInfo, type ResourceName } from "./resources.js";
export { ApiError, statusObject, type StatusObject } from "./status.js";
export { type PortForwardDial } from "./portforward.js";
export { mergePatch, strategicMergePatch, jsonPatch, PATCH_TYPES } from "./patch.js";
export { parseLabelSelector, matchesLabels, parseFieldSelector, matchesFields } from "./selectors.js";
export type { KubeObject, KubeObjectInput, ObjectMeta, StoredEvent } from "./types.js";
