import type { KubeObject } from "./types.js";
import { cloneJson, isPlainObject } from "./types.js";
import { apiVersionOf, resourceInfo, type ResourceInfo } from "./resources.js";
import type { DeletePreconditions, ObjectStore } from "./store.js";
import { ApiError, errors } from "./status.js";
import { parseFieldSelector, parseLabelSelector } from "./selectors.js";
import { PATCH_TYPES, PatchApplyError, PatchFormatError, applyPatch } from "./patch.js";
import { prepareForCreate, prepareForUpdate } from "./strategy.js";
import type { WatchFilter } from "./watch.js";

// The REST verbs on a resource, from a parsed request to the store: the checks and strategies
// the API server applies before anything is persisted. HTTP framing lives in server.ts.

/** List items travel without kind/apiVersion, as from a real API server. */
function listItem(o: KubeObject): KubeObject {
  const { kind: _k, apiVersion: _a, ...rest } = cloneJson(o);
  return rest as KubeObject;
}

interface ContinueToken {
  rv: string;
  after: string;
}

function encodeContinue(t: ContinueToken): string {
  return Buffer.from(JSON.stringify(t)).toString("base64url");
}

function decodeContinue(s: string): ContinueToken {
  try {
    const t = JSON.parse(Buffer.from(s, "base64url").toString()) as unknown;
    if (isPlainObject(t) && typeof t["rv"] === "string" && typeof t["after"] === "string") return { rv: t["rv"], after: t["after"] };
  } catch {
    // fall through to the error below
  }
  throw errors.badRequest("continue key is not valid");
}

function objectKey(o: KubeObject): string {
  return `${o.metadata.namespace ?? ""}/${o.metadata.name ?? ""}`;
}

/** Namespace and selectors of a list or watch request (400 on a bad selector). */
export function watchFilter(r: ResourceInfo, namespace: string | undefined, query: Record<string, string>): WatchFilter {
  const f: WatchFilter = {
    labelSelector: parseLabelSelector(query["labelSelector"]),
    fieldSelector: parseFieldSelector(query["fieldSelector"], r),
  };
  if (namespace !== undefined) f.namespace = namespace;
  return f;
}

export function listBody(store: ObjectStore, r: ResourceInfo, namespace: string | undefined, query: Record<string, string>): unknown {
  const f = watchFilter(r, namespace, query);
  let items = store.listObjects(r, f);
  let rv = store.resourceVersion;
  if (query["continue"]) {
    const token = decodeContinue(query["continue"]);
    rv = token.rv;
    items = items.filter((o) => objectKey(o) > token.after);
  }
  const metadata: Record<string, unknown> = { resourceVersion: rv };
  const limit = Number(query["limit"] ?? "0");
  if (Number.isInteger(limit) && limit > 0 && items.length > limit) {
    metadata["remainingItemCount"] = items.length - limit;
    items = items.slice(0, limit);
    metadata["continue"] = encodeContinue({ rv, after: objectKey(items[items.length - 1]!) });
  }
  return { kind: r.listKind, apiVersion: apiVersionOf(r), metadata, items: items.map(listItem) };
}

function bodyObject(r: ResourceInfo, body: unknown): KubeObject {
  if (!isPlainObject(body)) throw errors.badRequest(`the body must be a ${r.kind} object`);
  if (body["kind"] !== undefined && body["kind"] !== r.kind) {
    throw errors.badRequest(`the kind in the body (${String(body["kind"])}) does not match the resource (${r.kind})`);
  }
  if (!isPlainObject(body["metadata"])) body["metadata"] = {};
  return body as KubeObject;
}

function checkNamespace(r: ResourceInfo, obj: KubeObject, namespace: string | undefined): void {
  if (!r.namespaced) return;
  if (obj.metadata.namespace && obj.metadata.namespace !== namespace) {
    throw errors.badRequest("the namespace of the provided object does not match the namespace sent on the request");
  }
  obj.metadata.namespace = namespace;
}

export function createFromBody(store: ObjectStore, r: ResourceInfo, namespace: string | undefined, body: unknown): KubeObject {
  const obj = bodyObject(r, body);
  checkNamespace(r, obj, namespace);
  if (obj.metadata.resourceVersion) throw errors.badRequest("resourceVersion should not be set on objects to be created");
  if (r.namespaced && namespace !== undefined) {
    const ns = store.get("namespaces", namespace);
    if (ns === undefined) throw errors.notFound(resourceInfo("namespaces"), namespace);
    if (ns.metadata.deletionTimestamp) {
      throw new ApiError(403, "Forbidden", `${r.plural} "${obj.metadata.name ?? ""}" is forbidden: unable to create new content in namespace ${namespace} because it is being terminated`);
    }
  }
  prepareForCreate(r, obj);
  return store.createObject(r, obj);
}

export function updateFromBody(store: ObjectStore, r: ResourceInfo, name: string, namespace: string | undefined, sub: string | undefined, body: unknown): KubeObject {
  const obj = bodyObject(r, body);
  if (obj.metadata.name !== name) {
    throw errors.badRequest(`the name of the object (${obj.metadata.name ?? ""}) does not match the name on the URL (${name})`);
  }
  checkNamespace(r, obj, namespace);
  const old = store.getObject(r, name, namespace);
  return store.replaceObject(r, prepareForUpdate(r, obj, old, sub));
}

export function patchFromBody(store: ObjectStore, r: ResourceInfo, name: string, namespace: string | undefined, sub: string | undefined, contentType: string, body: unknown): KubeObject {
  const supported: string[] = Object.values(PATCH_TYPES);
  if (!supported.includes(contentType)) throw errors.unsupportedMediaType(contentType);
  const old = store.getObject(r, name, namespace);
  let patched: unknown;
  try {
    patched = applyPatch(contentType, cloneJson(old), body);
  } catch (err) {
    if (err instanceof PatchFormatError) throw errors.badRequest(err.message);
    if (err instanceof PatchApplyError) throw errors.invalid(r, name, "patch", err.message);
    throw err;
  }
  if (!isPlainObject(patched) || !isPlainObject(patched["metadata"])) throw errors.invalid(r, name, "metadata", "Required value");
  const next = patched as KubeObject;
  if (next.metadata.name !== name) throw errors.invalid(r, name, "metadata.name", "field is immutable");
  if (r.namespaced && next.metadata.namespace !== namespace) throw errors.invalid(r, name, "metadata.namespace", "field is immutable");
  return store.replaceObject(r, prepareForUpdate(r, next, old, sub));
}

function deletePreconditions(body: unknown): DeletePreconditions {
  if (!isPlainObject(body) || !isPlainObject(body["preconditions"])) return {};
  const p = body["preconditions"];
  const out: DeletePreconditions = {};
  if (typeof p["uid"] === "string") out.uid = p["uid"];
  if (typeof p["resourceVersion"] === "string") out.resourceVersion = p["resourceVersion"];
  return out;
}

/**
 * Grace period of a pod DELETE as the pod strategy computes it: DeleteOptions, else the pod's
 * terminationGracePeriodSeconds, else 30; 0 for an unscheduled or terminated pod.
 */
function podGraceSeconds(pod: KubeObject, body: unknown, query: Record<string, string>): number {
  const spec = isPlainObject(pod["spec"]) ? pod["spec"] : {};
  const status = isPlainObject(pod["status"]) ? pod["status"] : {};
  if (!spec["nodeName"] || status["phase"] === "Succeeded" || status["phase"] === "Failed") return 0;
  const fromBody = isPlainObject(body) ? body["gracePeriodSeconds"] : undefined;
  const candidates = [fromBody, query["gracePeriodSeconds"], spec["terminationGracePeriodSeconds"], 30];
  for (const c of candidates) {
    const n = typeof c === "string" ? Number(c) : c;
    if (typeof n === "number" && Number.isInteger(n) && n >= 0) return n;
  }
  return 30;
}

/** DELETE of one object; `graceful` turns on pod graceful deletion. */
export function deleteFromRequest(
  store: ObjectStore,
  r: ResourceInfo,
  name: string,
  namespace: string | undefined,
  body: unknown,
  query: Record<string, string>,
  graceful: boolean,
): KubeObject {
  const grace = graceful && r.plural === "pods" ? podGraceSeconds(store.getObject(r, name, namespace), body, query) : 0;
  return store.deleteObject(r, name, namespace, deletePreconditions(body), grace);
}

export function deleteCollection(store: ObjectStore, r: ResourceInfo, namespace: string | undefined, query: Record<string, string>): unknown {
  const victims = store.listObjects(r, watchFilter(r, namespace, query));
  const items = victims.map((o) => store.deleteObject(r, o.metadata.name ?? "", o.metadata.namespace));
  return { kind: r.listKind, apiVersion: apiVersionOf(r), metadata: { resourceVersion: store.resourceVersion }, items: items.map(listItem) };
}
