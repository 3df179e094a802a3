import { cloneJson, isPlainObject, jsonEqual } from "./types.js";

// The three patch formats the API server accepts from client-node. Strategic merge is treated
// as a JSON merge patch for maps (lists are replaced whole; `$patch` directives on maps are
// honoured, other `$` directives dropped) — enough for annotation/label/status patches.

export const PATCH_TYPES = {
  json: "application/json-patch+json",
  merge: "application/merge-patch+json",
  strategic: "application/strategic-merge-patch+json",
} as const;

/** A patch that parses but cannot be applied (the server answers 422). */
export class PatchApplyError extends Error {}
/** A patch document of the wrong shape (the server answers 400). */
export class PatchFormatError extends Error {}

/** RFC 7386: objects merge recursively, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return cloneJson(patch);
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

export function strategicMergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return cloneJson(patch);
  const directive = patch["$patch"];
  if (directive === "delete") return undefined;
  const rest = Object.fromEntries(Object.entries(patch).filter(([k]) => !k.startsWith("$")));
  if (directive === "replace") return cloneJson(rest);
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(rest)) {
    if (v === null) {
      delete out[k];
      continue;
    }
    const merged = strategicMergePatch(out[k], v);
    if (merged === undefined) delete out[k];
    else out[k] = merged;
  }
  return out;
}

export interface JsonPatchOp {
  op: "add" | "remove" | "replace" | "move" | "copy" | "test";
  path: string;
  from?: string;
  value?: unknown;
}

function parsePointer(ptr: string): string[] {
  if (ptr === "") return [];
  if (!ptr.startsWith("/")) throw new PatchFormatError(`invalid JSON pointer "${ptr}"`);
  return ptr
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

type Container = Record<string, unknown> | unknown[];

function resolveParent(doc: unknown, tokens: string[], ptr: string): { parent: Container; key: string } {
  let cur: unknown = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, t, ptr, false)];
    else if (isPlainObject(cur) && Object.prototype.hasOwnProperty.call(cur, t)) cur = cur[t];
    else throw new PatchApplyError(`path "${ptr}" does not exist`);
  }
  if (!Array.isArray(cur) && !isPlainObject(cur)) throw new PatchApplyError(`path "${ptr}" does not exist`);
  return { parent: cur, key: tokens[tokens.length - 1]! };
}

function arrayIndex(arr: unknown[], token: string, ptr: string, forInsert: boolean): number {
  if (forInsert && token === "-") return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchApplyError(`invalid array index "${token}" in "${ptr}"`);
  const i = Number(token);
  if (i > arr.length || (!forInsert && i === arr.length)) throw new PatchApplyError(`array index out of range in "${ptr}"`);
  return i;
}

function getAt(doc: unknown, ptr: string): unknown {
  const tokens = parsePointer(ptr);
  if (tokens.length === 0) return doc;
  const { parent, key } = resolveParent(doc, tokens, ptr);
  if (Array.isArray(parent)) return parent[arrayIndex(parent, key, ptr, false)];
  if (!Object.prototype.hasOwnProperty.call(parent, key)) throw new PatchApplyError(`path "${ptr}" does not exist`);
  return parent[key];
}

function removeAt(doc: unknown, ptr: string): unknown {
  const tokens = parsePointer(ptr);
  if (tokens.length === 0) throw new PatchApplyError("cannot remove the whole document");
  const { parent, key } = resolveParent(doc, tokens, ptr);
  if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, key, ptr, false), 1)[0];
  if (!Object.prototype.hasOwnProperty.call(parent, key)) throw new PatchApplyError(`path "${ptr}" does not exist`);
  const old = parent[key];
  delete parent[key];
  return old;
}

function addAt(doc: unknown, ptr: string, value: unknown): unknown {
  const tokens = parsePointer(ptr);
  if (tokens.length === 0) return value;
  const { parent, key } = resolveParent(doc, tokens, ptr);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, ptr, true), 0, value);
  else parent[key] = value;
  return doc;
}

function parseOps(patch: unknown): JsonPatchOp[] {
  if (!Array.isArray(patch)) throw new PatchFormatError("a JSON patch must be an array of operations");
  return patch.map((raw, i) => {
    if (!isPlainObject(raw) || typeof raw["op"] !== "string" || typeof raw["path"] !== "string") {
      throw new PatchFormatError(`JSON patch operation ${i} needs string "op" and "path"`);
    }
    const op = raw["op"];
    if (!["add", "remove", "replace", "move", "copy", "test"].includes(op)) throw new PatchFormatError(`unknown JSON patch op "${op}"`);
    if ((op === "move" || op === "copy") && typeof raw["from"] !== "string") throw new PatchFormatError(`JSON patch op "${op}" needs "from"`);
    if ((op === "add" || op === "replace" || op === "test") && !("value" in raw)) throw new PatchFormatError(`JSON patch op "${op}" needs "value"`);
    return raw as unknown as JsonPatchOp;
  });
}

/** RFC 6902, applied to a copy; the first failing operation aborts the whole patch. */
export function jsonPatch(target: unknown, patch: unknown): unknown {
  const ops = parseOps(patch);
  let doc = cloneJson(target);
  for (const o of ops) {
    switch (o.op) {
      case "add":
        doc = addAt(doc, o.path, cloneJson(o.value));
        break;
      case "remove":
        removeAt(doc, o.path);
        break;
      case "replace":
        if (parsePointer(o.path).length === 0) doc = cloneJson(o.value);
        else {
          removeAt(doc, o.path);
          doc = addAt(doc, o.path, cloneJson(o.value));
        }
        break;
      case "move": {
        const v = removeAt(doc, o.from!);
        doc = addAt(doc, o.path, v);
        break;
      }
      case "copy":
        doc = addAt(doc, o.path, cloneJson(getAt(doc, o.from!)));
        break;
      case "test":
        if (!jsonEqual(getAt(doc, o.path), o.value)) throw new PatchApplyError(`test operation failed at "${o.path}"`);
        break;
    }
  }
  return doc;
}

/** Applies a parsed patch body of the given content type; undefined for an unsupported type. */
export function applyPatch(contentType: string, target: unknown, patch: unknown): unknown {
  switch (contentType) {
    case PATCH_TYPES.json:
      return jsonPatch(target, patch);
    case PATCH_TYPES.merge:
      if (!isPlainObject(patch)) throw new PatchFormatError("a merge patch must be a JSON object");
      return mergePatch(target, patch);
    case PATCH_TYPES.strategic:
      if (!isPlainObject(patch)) throw new PatchFormatError("a strategic merge patch must be a JSON object");
      return strategicMergePatch(target, patch);
    default:
      return undefined;
  }
}
