import { findResource, type ResourceInfo } from "./resources.js";

// URL → what is addressed, following the API server's path layout:
//   /api/v1[/watch][/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]
//   /apis/{group}/{version}[/watch][/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]
// `/api/v1/namespaces/{name}/status` addresses the namespace itself, not a resource in it.

export interface ResourceRoute {
  type: "resource";
  r: ResourceInfo;
  namespace?: string;
  name?: string;
  subresource?: string;
  /** The deprecated /watch/ path prefix. */
  legacyWatch: boolean;
}

export interface DiscoveryRoute {
  type: "discovery";
  what: "api" | "apis" | "group" | "resources" | "version" | "health";
  group?: string;
  version?: string;
}

export type Route = ResourceRoute | DiscoveryRoute;

export function parseRoute(pathname: string): Route | undefined {
  const segs = pathname.split("/").filter((s) => s !== "").map((s) => decodeURIComponent(s));
  if (segs.length === 1 && segs[0] === "version") return { type: "discovery", what: "version" };
  if (segs.length === 1 && ["healthz", "readyz", "livez"].includes(segs[0]!)) return { type: "discovery", what: "health" };
  let group: string;
  let version: string;
  let rest: string[];
  if (segs[0] === "api") {
    if (segs.length === 1) return { type: "discovery", what: "api" };
    group = "";
    version = segs[1]!;
    rest = segs.slice(2);
  } else if (segs[0] === "apis") {
    if (segs.length === 1) return { type: "discovery", what: "apis" };
    if (segs.length === 2) return { type: "discovery", what: "group", group: segs[1]! };
    group = segs[1]!;
    version = segs[2]!;
    rest = segs.slice(3);
  } else {
    return undefined;
  }
  if (rest.length === 0) return { type: "discovery", what: "resources", group, version };

  let legacyWatch = false;
  if (rest[0] === "watch") {
    legacyWatch = true;
    rest = rest.slice(1);
  }
  if (rest[0] === "namespaces" && rest.length >= 3) {
    const inNs = findResource(group, version, rest[2]!);
    if (inNs !== undefined && inNs.namespaced) {
      return withName({ type: "resource", r: inNs, namespace: rest[1]!, legacyWatch }, rest.slice(3));
    }
  }
  const r = findResource(group, version, rest[0]!);
  if (r === undefined) return undefined;
  // A namespaced resource without /namespaces/{ns}/ is only addressable as a collection.
  if (r.namespaced && rest.length > 1) return undefined;
  return withName({ type: "resource", r, legacyWatch }, rest.slice(1));
}

function withName(route: ResourceRoute, tail: string[]): ResourceRoute | undefined {
  if (tail.length > 2) return undefined;
  if (tail[0] !== undefined) route.name = tail[0];
  if (tail[1] !== undefined) route.subresource = tail[1];
  return route;
}
