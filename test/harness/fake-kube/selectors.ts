import type { KubeObject } from "./types.js";
import type { ResourceInfo } from "./resources.js";
import { errors } from "./status.js";

// Label and field selectors with the API server's grammar and semantics: `!=` and `notin`
// also match objects without the label; field selectors only accept the resource's own fields.

export type LabelRequirement =
  | { op: "exists" | "!exists"; key: string }
  | { op: "=" | "!="; key: string; value: string }
  | { op: "in" | "notin"; key: string; values: string[] }
  | { op: ">" | "<"; key: string; value: number };

export type LabelSelector = LabelRequirement[];

const KEY = "[A-Za-z0-9._/-]+";
const KEY_RE = /^(?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const VALUE_RE = /^(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else {
      cur += ch;
    }
  }
  parts.push(cur);
  return parts;
}

function checkKey(key: string, raw: string): string {
  if (key.length > 317 || !KEY_RE.test(key)) throw errors.badRequest(`unable to parse requirement: invalid label key "${key}" in "${raw}"`);
  return key;
}

function checkValue(value: string, raw: string): string {
  if (value.length > 63 || !VALUE_RE.test(value)) throw errors.badRequest(`unable to parse requirement: invalid label value "${value}" in "${raw}"`);
  return value;
}

export function parseLabelSelector(input: string | undefined): LabelSelector {
  if (input === undefined || input.trim() === "") return [];
  const reqs: LabelSelector = [];
  for (const raw of splitTopLevel(input)) {
    const part = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^!\\s*(${KEY})$`).exec(part))) {
      reqs.push({ op: "!exists", key: checkKey(m[1]!, raw) });
    } else if ((m = new RegExp(`^(${KEY})$`).exec(part))) {
      reqs.push({ op: "exists", key: checkKey(m[1]!, raw) });
    } else if ((m = new RegExp(`^(${KEY})\\s*(==|=|!=)\\s*([^\\s=!]*)$`).exec(part))) {
      const op = m[2] === "!=" ? "!=" : "=";
      reqs.push({ op, key: checkKey(m[1]!, raw), value: checkValue(m[3]!, raw) });
    } else if ((m = new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\(([^()]*)\\)$`).exec(part))) {
      const values = m[3]!.split(",").map((v) => checkValue(v.trim(), raw));
      if (m[2] === "in" && values.length === 1 && values[0] === "") {
        throw errors.badRequest(`unable to parse requirement: for 'in' operator, values set can't be empty in "${raw}"`);
      }
      reqs.push({ op: m[2] === "in" ? "in" : "notin", key: checkKey(m[1]!, raw), values });
    } else if ((m = new RegExp(`^(${KEY})\\s*(>|<)\\s*(-?\\d+)$`).exec(part))) {
      reqs.push({ op: m[2] === ">" ? ">" : "<", key: checkKey(m[1]!, raw), value: Number(m[3]) });
    } else {
      throw errors.badRequest(`unable to parse requirement: "${raw}" is not a valid label selector requirement`);
    }
  }
  return reqs;
}

export function matchesLabels(sel: LabelSelector, labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return sel.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case "exists":
        return has;
      case "!exists":
        return !has;
      case "=":
        return has && v === r.value;
      case "!=":
        return !has || v !== r.value;
      case "in":
        return has && r.values.includes(v!);
      case "notin":
        return !has || !r.values.includes(v!);
      case ">":
      case "<": {
        if (!has || !/^-?\d+$/.test(v!)) return false;
        const n = Number(v);
        return r.op === ">" ? n > r.value : n < r.value;
      }
    }
  });
}

export interface FieldRequirement {
  field: string;
  op: "=" | "!=";
  value: string;
}

/** Splits on an unescaped separator; `\,` `\=` `\!` `\\` are escapes, as in fields.ParseSelector. */
function splitEscaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === "\\" && i + 1 < s.length) {
      cur += ch + s[i + 1]!;
      i++;
    } else if (ch === sep) {
      out.push(cur);
      cur = "";
    } else {
      cur += ch;
    }
  }
  out.push(cur);
  return out;
}

function unescape(s: string): string {
  return s.replace(/\\(.)/g, "$1");
}

export function parseFieldSelector(input: string | undefined, r: ResourceInfo): FieldRequirement[] {
  if (input === undefined || input.trim() === "") return [];
  const allowed = new Set(["metadata.name", "metadata.namespace", ...r.fields]);
  const reqs: FieldRequirement[] = [];
  for (const raw of splitEscaped(input, ",")) {
    const m = /^([^=!]+?)\s*(!=|==|=)(.*)$/.exec(raw.trim());
    if (m === null) throw errors.badRequest(`invalid selector: '${input}'; can't understand '${raw}'`);
    const field = m[1]!.trim();
    if (!allowed.has(field)) throw errors.badRequest(`field label not supported: ${field}`);
    reqs.push({ field, op: m[2] === "!=" ? "!=" : "=", value: unescape(m[3]!.trim()) });
  }
  return reqs;
}

/** The string value a field selector compares: booleans as true/false, absent as "". */
export function fieldValue(obj: KubeObject, path: string): string {
  let cur: unknown = obj;
  for (const seg of path.split(".")) {
    if (typeof cur !== "object" || cur === null) return "";
    cur = (cur as Record<string, unknown>)[seg];
  }
  if (typeof cur === "string") return cur;
  if (typeof cur === "boolean" || typeof cur === "number") return String(cur);
  if (cur === undefined || cur === null) {
    // The API server's field sets report unset booleans as "false".
    return path === "spec.hostNetwork" || path === "spec.unschedulable" ? "false" : "";
  }
  return JSON.stringify(cur);
}

export function matchesFields(sel: FieldRequirement[], obj: KubeObject): boolean {
  return sel.every((r) => (fieldValue(obj, r.field) === r.value) === (r.op === "="));
}
