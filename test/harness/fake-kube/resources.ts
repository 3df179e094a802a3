// The resources the fake serves. Field selectors are the per-resource sets the real API server
// accepts (anything else is a 400 there too, so product code can't rely on an unsupported one).

export interface ResourceInfo {
  /** Plural as in URLs and RBAC rules: `pods`, `endpointslices`. */
  plural: string;
  singular: string;
  kind: string;
  listKind: string;
  /** "" for the core group. */
  group: string;
  version: string;
  namespaced: boolean;
  /** Has a `status` subresource (main endpoint then ignores status; /status keeps spec). */
  statusSubresource: boolean;
  /** Field paths usable in fieldSelector besides metadata.name / metadata.namespace. */
  fields: readonly string[];
  shortNames: readonly string[];
}

export const RESOURCES = [
  {
    plural: "namespaces", singular: "namespace", kind: "Namespace", listKind: "NamespaceList",
    group: "", version: "v1", namespaced: false, statusSubresource: true,
    fields: ["status.phase"], shortNames: ["ns"],
  },
  {
    plural: "nodes", singular: "node", kind: "Node", listKind: "NodeList",
    group: "", version: "v1", namespaced: false, statusSubresource: true,
    fields: ["spec.unschedulable"], shortNames: ["no"],
  },
  {
    plural: "pods", singular: "pod", kind: "Pod", listKind: "PodList",
    group: "", version: "v1", namespaced: true, statusSubresource: true,
    fields: [
      "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
      "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName",
    ],
    shortNames: ["po"],
  },
  {
    plural: "services", singular: "service", kind: "Service", listKind: "ServiceList",
    group: "", version: "v1", namespaced: true, statusSubresource: true,
    fields: ["spec.clusterIP", "spec.type"], shortNames: ["svc"],
  },
  {
    plural: "endpoints", singular: "endpoints", kind: "Endpoints", listKind: "EndpointsList",
    group: "", version: "v1", namespaced: true, statusSubresource: false,
    fields: [], shortNames: ["ep"],
  },
  {
    plural: "secrets", singular: "secret", kind: "Secret", listKind: "SecretList",
    group: "", version: "v1", namespaced: true, statusSubresource: false,
    fields: ["type"], shortNames: [],
  },
  {
    plural: "configmaps", singular: "configmap", kind: "ConfigMap", listKind: "ConfigMapList",
    group: "", version: "v1", namespaced: true, statusSubresource: false,
    fields: [], shortNames: ["cm"],
  },
  {
    plural: "serviceaccounts", singular: "serviceaccount", kind: "ServiceAccount", listKind: "ServiceAccountList",
    group: "", version: "v1", namespaced: true, statusSubresource: false,
    fields: [], shortNames: ["sa"],
  },
  {
    plural: "endpointslices", singular: "endpointslice", kind: "EndpointSlice", listKind: "EndpointSliceList",
    group: "discovery.k8s.io", version: "v1", namespaced: true, statusSubresource: false,
    fields: [], shortNames: [],
  },
  // Istio's security CRDs (as istioctl installs them: namespaced, with a status subresource).
  {
    plural: "authorizationpolicies", singular: "authorizationpolicy", kind: "AuthorizationPolicy", listKind: "AuthorizationPolicyList",
    group: "security.istio.io", version: "v1", namespaced: true, statusSubresource: true,
    fields: [], shortNames: ["ap"],
  },
  {
    plural: "peerauthentications", singular: "peerauthentication", kind: "PeerAuthentication", listKind: "PeerAuthenticationList",
    group: "security.istio.io", version: "v1", namespaced: true, statusSubresource: true,
    fields: [], shortNames: ["pa"],
  },
] as const satisfies readonly ResourceInfo[];

export type ResourceName = (typeof RESOURCES)[number]["plural"];

const byPlural = new Map<string, ResourceInfo>(RESOURCES.map((r) => [r.plural, r]));

export function resourceInfo(plural: ResourceName): ResourceInfo {
  const r = byPlural.get(plural);
  if (r === undefined) throw new Error(`fake-kube: unknown resource ${plural}`);
  return r;
}

/** Lookup by group/version/plural as they appear in a URL; undefined when not served. */
export function findResource(group: string, version: string, plural: string): ResourceInfo | undefined {
  const r = byPlural.get(plural);
  if (r === undefined || r.group !== group || r.version !== version) return undefined;
  return r;
}

export function apiVersionOf(r: ResourceInfo): string {
  return r.group === "" ? r.version : `${r.group}/${r.version}`;
}
