import { closest } from "../did-you-mean.js";
import { ValueError, type Parser } from "./values.js";

// A binary's environment as one typed schema: every variable with its parser, its default and
// one line of help. Reading validates everything once and returns a fully defaulted object;
// `--help` prints the same table, so what is documented is what is read.

export type Env = Readonly<Record<string, string | undefined>>;

export interface VarSpec<T> {
  readonly doc: string;
  readonly parse: Parser<T>;
  readonly default: T;
  /** How the default reads in --help when String(default) would not say it well. */
  readonly shows?: string | undefined;
}

/** A variable with a default. */
export function variable<T>(doc: string, parse: Parser<T>, dflt: T, shows?: string): VarSpec<T> {
  return { doc, parse, default: dflt, shows };
}

/** A variable that is unset unless given. */
export function optional<T>(doc: string, parse: Parser<T>, shows = "unset"): VarSpec<T | undefined> {
  return { doc, parse, default: undefined, shows };
}

export type EnvSchema = Readonly<Record<string, VarSpec<unknown>>>;

export type EnvValues<S extends EnvSchema> = { readonly [K in keyof S]: S[K] extends VarSpec<infer T> ? T : never };

/** The names a binary answers to beyond its schema, and the prefixes that mark a name as ours. */
export interface EnvFamily {
  /** A variable whose name starts with one of these and is not known is reported as unknown. */
  readonly prefixes: readonly string[];
  /** Read elsewhere (LOG_LEVEL, the addon path, in-cluster variables): known, not in the schema. */
  readonly alsoRead: readonly string[];
}

export type ConfigFailure = (variable: string, message: string) => Error;

/** Reads every schema variable from `env` (empty = unset); a bad value fails naming the variable. */
export function readEnv<S extends EnvSchema>(schema: S, env: Env, fail: ConfigFailure): EnvValues<S> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(schema)) {
    const raw = env[key]?.trim();
    if (raw === undefined || raw === "") {
      out[key] = spec.default;
      continue;
    }
    try {
      out[key] = spec.parse(raw);
    } catch (err) {
      if (err instanceof ValueError) throw fail(key, err.message);
      throw err;
    }
  }
  return out as EnvValues<S>;
}

export interface NameReport {
  /** Names close to a known one (case or up to two edits): almost surely a typo. */
  readonly misspelled: readonly { readonly name: string; readonly hint: string }[];
  /** Names with one of our prefixes that nothing reads. */
  readonly unknown: readonly string[];
}

/** Finds variables in `env` that look like ours but are not read by anything. */
export function checkNames(schema: EnvSchema, family: EnvFamily, env: Env): NameReport {
  const known = [...Object.keys(schema), ...family.alsoRead];
  const knownSet = new Set(known);
  const misspelled: { name: string; hint: string }[] = [];
  const unknown: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (knownSet.has(name) || env[name] === undefined) continue;
    // Short names are too close to everything to guess from.
    const hint = name.length >= 5 ? closest(name, known) : undefined;
    if (hint !== undefined) misspelled.push({ name, hint });
    else if (family.prefixes.some((p) => name.startsWith(p))) unknown.push(name);
  }
  return { misspelled, unknown };
}

/** Fails on the first misspelled variable, with the name it most likely meant. */
export function rejectMisspelled(report: NameReport, fail: ConfigFailure): void {
  const first = report.misspelled[0];
  if (first !== undefined) throw fail(first.name, `is not a variable this program reads; did you mean ${first.hint}?`);
}

/** The --help table: every variable, its default and what it does. */
export function helpText(intro: string, schema: EnvSchema, family: EnvFamily): string {
  const lines = [intro, "", "Environment variables (empty = unset = the default):", ""];
  for (const [key, spec] of Object.entries(schema)) {
    lines.push(`  ${key}  (default: ${spec.shows ?? showDefault(spec.default)})`, `      ${spec.doc}`);
  }
  if (family.alsoRead.length > 0) lines.push("", `Also read: ${family.alsoRead.join(", ")}.`);
  return `${lines.join("\n")}\n`;
}

function showDefault(v: unknown): string {
  if (v === undefined) return "unset";
  if (Array.isArray(v)) return v.length === 0 ? "none" : v.join(",");
  if (typeof v === "object" && v !== null && "host" in v && "port" in v) {
    const { host, port } = v as { host: string; port: number };
    return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  }
  return String(v);
}
