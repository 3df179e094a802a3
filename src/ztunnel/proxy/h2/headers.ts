import type { HeaderField } from "./hpack-table.js";

// Field-section checks of RFC 9113 §8.2–8.3 that make a request or response malformed (a stream
// error PROTOCOL_ERROR): upper-case names, pseudo-headers that are unknown, repeated or after a
// regular field, connection-specific fields, and a missing :method / :status. Method-specific
// rules (CONNECT's :authority, no :scheme/:path) are HBONE's to judge: it answers 400.

const CONNECTION_SPECIFIC = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);
const REQUEST_PSEUDO = new Set([":method", ":scheme", ":authority", ":path", ":protocol"]);
const RESPONSE_PSEUDO = new Set([":status"]);

/** Undefined when well-formed, else why not. */
export function malformed(headers: readonly HeaderField[], kind: "request" | "response" | "trailers"): string | undefined {
  const allowed = kind === "request" ? REQUEST_PSEUDO : kind === "response" ? RESPONSE_PSEUDO : new Set<string>();
  const seen = new Set<string>();
  let regular = false;
  for (const [name, value] of headers) {
    if (name.length === 0) return "empty field name";
    if (name !== name.toLowerCase()) return `field name "${name}" is not lower case`;
    if (name.startsWith(":")) {
      if (regular) return `pseudo-header ${name} after a regular field`;
      if (!allowed.has(name)) return `pseudo-header ${name} is not allowed in a ${kind}`;
      if (seen.has(name)) return `pseudo-header ${name} repeated`;
      seen.add(name);
      continue;
    }
    regular = true;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
    if (name === "te" && value !== "trailers") return `te: ${value} (only "trailers" is allowed)`;
  }
  if (kind === "request" && !seen.has(":method")) return "request without :method";
  if (kind === "response" && !seen.has(":status")) return "response without :status";
  return undefined;
}

/** The first value of `name`, if present. */
export function field(headers: readonly HeaderField[], name: string): string | undefined {
  for (const [n, v] of headers) if (n === name) return v;
  return undefined;
}

/** Headers as a plain object (repeated names joined with ", "), the shape node:http2 gives. */
export function headerObject(headers: readonly HeaderField[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [n, v] of headers) out[n] = Object.hasOwn(out, n) ? `${out[n]}, ${v}` : v;
  return out;
}
