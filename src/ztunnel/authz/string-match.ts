// String matches of ztunnel's RbacMatch: exact, prefix, suffix, presence (non-empty). An empty
// value (no peer identity) never matches, not even presence — which is what makes
// `notPrincipals: ["*"]` match exactly the plaintext connections.

import type { StringMatch, StringMatchKind } from "./types.js";

export type MatchKind = StringMatchKind;
export type StringMatcher = StringMatch;

const OBJECT_KINDS: Readonly<Record<string, MatchKind>> = { Exact: "exact", Prefix: "prefix", Suffix: "suffix", Presence: "presence" };

/** Compiles one spec; a string describing the problem if it is not valid. */
export function compileStringMatch(spec: unknown): StringMatcher | string {
  if (typeof spec === "string") return fromIstioNotation(spec);
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
    return `expected a string or one of {Exact|Prefix|Suffix|Presence}, got ${describe(spec)}`;
  }
  const keys = Object.keys(spec);
  if (keys.length !== 1) return `expected exactly one of Exact, Prefix, Suffix, Presence; got ${keys.length === 0 ? "an empty mapping" : keys.join(", ")}`;
  const key = keys[0] ?? "";
  const kind = Object.hasOwn(OBJECT_KINDS, key) ? OBJECT_KINDS[key] : undefined;
  if (kind === undefined) {
    const hint = Object.keys(OBJECT_KINDS).find((k) => k.toLowerCase() === key.toLowerCase());
    return `unknown match type "${key}"${hint !== undefined ? ` (did you mean ${hint}?)` : " (Exact, Prefix, Suffix or Presence)"}`;
  }
  if (kind === "presence") return { kind, value: "" };
  const value = (spec as Record<string, unknown>)[key];
  if (typeof value !== "string") return `${key} needs a string, got ${describe(value)}`;
  // An empty prefix/suffix would match everything including "no identity": say presence instead.
  if (value === "") return `${key} must not be empty (use Presence, or "*", to match any value)`;
  return { kind, value };
}

function fromIstioNotation(s: string): StringMatcher | string {
  if (s === "") return "must not be empty";
  if (s === "*") return { kind: "presence", value: "" };
  const inner = s.slice(1, -1);
  if (inner.includes("*")) return `"${s}": "*" is only allowed at the start (suffix match) or the end (prefix match)`;
  if (s.startsWith("*")) return s.endsWith("*") ? `"${s}": "*" at both ends is not supported` : { kind: "suffix", value: s.slice(1) };
  if (s.endsWith("*")) return { kind: "prefix", value: s.slice(0, -1) };
  return { kind: "exact", value: s };
}

export function stringMatches(m: StringMatcher, check: string): boolean {
  if (check === "") return false;
  switch (m.kind) {
    case "exact":
      return check === m.value;
    case "prefix":
      return check.startsWith(m.value);
    case "suffix":
      return check.endsWith(m.value);
    case "presence":
      return true;
  }
}

export function formatStringMatch(m: StringMatcher): string {
  switch (m.kind) {
    case "exact":
      return m.value;
    case "prefix":
      return `${m.value}*`;
    case "suffix":
      return `*${m.value}`;
    case "presence":
      return "*";
  }
}

export function describe(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  return typeof v === "object" ? "a mapping" : `${typeof v} ${JSON.stringify(v)}`;
}
