import { RESOURCES, apiVersionOf, type ResourceInfo } from "./resources.js";
import type { DiscoveryRoute } from "./router.js";

// Just enough discovery for clients that map kinds to resources (KubernetesObjectApi, kubectl).

const VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

function groups(): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const r of RESOURCES) {
    if (r.group === "") continue;
    const versions = m.get(r.group) ?? [];
    if (!versions.includes(r.version)) versions.push(r.version);
    m.set(r.group, versions);
  }
  return m;
}

function apiGroup(name: string, versions: string[]): Record<string, unknown> {
  const vs = versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
  return { name, versions: vs, preferredVersion: vs[0] };
}

function resourceEntries(r: ResourceInfo): Record<string, unknown>[] {
  const main = { name: r.plural, singularName: r.singular, namespaced: r.namespaced, kind: r.kind, verbs: VERBS, shortNames: [...r.shortNames] };
  if (!r.statusSubresource) return [main];
  return [main, { name: `${r.plural}/status`, singularName: "", namespaced: r.namespaced, kind: r.kind, verbs: ["get", "patch", "update"] }];
}

/** Body for a discovery path, or undefined when the group/version is not served. */
export function discoveryBody(route: DiscoveryRoute): unknown {
  switch (route.what) {
    case "version":
      return { major: "1", minor: "33", gitVersion: "v1.33.0-fake", platform: "linux/amd64" };
    case "health":
      return "ok";
    case "api":
      return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] };
    case "apis":
      return { kind: "APIGroupList", apiVersion: "v1", groups: [...groups()].map(([n, v]) => apiGroup(n, v)) };
    case "group": {
      const versions = groups().get(route.group ?? "");
      return versions === undefined ? undefined : { kind: "APIGroup", apiVersion: "v1", ...apiGroup(route.group ?? "", versions) };
    }
    case "resources": {
      const rs = RESOURCES.filter((r) => r.group === route.group && r.version === route.version);
      if (rs.length === 0) return undefined;
      return { kind: "APIResourceList", apiVersion: "v1", groupVersion: apiVersionOf(rs[0]!), resources: rs.flatMap(resourceEntries) };
    }
  }
}
