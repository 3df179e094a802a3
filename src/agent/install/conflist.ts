// Chaining our plugin into the host's CNI configuration, as pure functions over the net dir's
// files so every case is a golden test. The agent's installer applies the plans to disk.
export interface ConfFile {
  name: string;
  content: string;
}

export type Choice = { file: ConfFile } | { file: undefined; reason: string };

export type InstallPlan =
  | { action: "write"; source: string; target: string; content: string; removeSource: boolean }
  | { action: "unchanged"; target: string }
  | { action: "wait"; reason: string };

type Json = Record<string, unknown>;

const EXTENSIONS = [".conf", ".conflist", ".json"];

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function ext(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? "" : name.slice(dot);
}

function parse(content: string): Json | undefined {
  try {
    const v: unknown = JSON.parse(content);
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function isList(name: string): boolean {
  return ext(name) === ".conflist";
}

/** Why a file cannot carry our plugin, or undefined when it can (libcni's own checks, roughly). */
export function invalidReason(file: ConfFile): string | undefined {
  const doc = parse(file.content);
  if (doc === undefined) return "not a JSON object";
  if (isList(file.name)) {
    const plugins = doc.plugins;
    if (!Array.isArray(plugins) || plugins.length === 0) return `no "plugins" list`;
    if (!plugins.every((p: unknown) => isObject(p) && typeof p.type === "string" && p.type !== "")) {
      return `a plugin without "type"`;
    }
    return undefined;
  }
  if (typeof doc.type !== "string" || doc.type === "") return `no "type"`;
  return undefined;
}

/** The alternative name for CNI_CONF_NAME: x.conf ↔ x.conflist. */
export function alternateName(name: string): string | undefined {
  if (name.endsWith(".conflist")) return name.slice(0, -"list".length);
  if (name.endsWith(".conf")) return name + "list";
  return undefined;
}

/**
 * The file to chain into: CNI_CONF_NAME (or its .conf↔.conflist twin) when given, otherwise
 * the first valid *.conf / *.conflist / *.json in lexical order — the file the runtime uses.
 */
export function chooseConfFile(files: readonly ConfFile[], confName?: string): Choice {
  const byName = new Map(files.map((f) => [f.name, f]));
  if (confName !== undefined && confName !== "") {
    const alt = alternateName(confName);
    const file = byName.get(confName) ?? (alt !== undefined ? byName.get(alt) : undefined);
    if (file === undefined) return { file: undefined, reason: `CNI_CONF_NAME ${confName} not present yet` };
    const why = invalidReason(file);
    if (why !== undefined) return { file: undefined, reason: `${file.name} is invalid: ${why}` };
    return { file };
  }
  const candidates = files.filter((f) => EXTENSIONS.includes(ext(f.name))).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const f of candidates) {
    if (invalidReason(f) === undefined) return { file: f };
  }
  return { file: undefined, reason: candidates.length === 0 ? "no CNI config present yet" : "no valid CNI config present yet" };
}

function render(doc: Json): string {
  return JSON.stringify(doc, null, 2) + "\n";
}

/** The conflist document of a file, converting a single-plugin .conf into a list. */
function asList(file: ConfFile): Json {
  const doc = parse(file.content) ?? {};
  if (isList(file.name)) return doc;
  const { cniVersion, ...plugin } = doc;
  return { cniVersion, name: doc.name, plugins: [plugin] };
}

function withoutOurs(plugins: unknown[], pluginType: string): unknown[] {
  return plugins.filter((p) => !(isObject(p) && p.type === pluginType));
}

/** Our entry appended last (after removing any stale one), as a .conflist. */
export function insertPlugin(file: ConfFile, entry: Json & { type: string }): ConfFile {
  const list = asList(file);
  const plugins = Array.isArray(list.plugins) ? list.plugins : [];
  const name = isList(file.name) ? file.name : file.name.slice(0, file.name.length - ext(file.name).length) + ".conflist";
  return { name, content: render({ ...list, plugins: [...withoutOurs(plugins, entry.type), entry] }) };
}

export function planInstall(files: readonly ConfFile[], entry: Json & { type: string }, confName?: string): InstallPlan {
  const choice = chooseConfFile(files, confName);
  if (choice.file === undefined) return { action: "wait", reason: choice.reason };
  const out = insertPlugin(choice.file, entry);
  const current = files.find((f) => f.name === out.name);
  if (out.name === choice.file.name && current?.content === out.content) return { action: "unchanged", target: out.name };
  return {
    action: "write",
    source: choice.file.name,
    target: out.name,
    content: out.content,
    removeSource: out.name !== choice.file.name,
  };
}

export type CleanupStep = { name: string; action: "write"; content: string } | { name: string; action: "remove" };

/**
 * Removes our entries from every config list that has one. A list that held nothing but our
 * entry is removed (it would be invalid); files without our entry are left byte-for-byte.
 */
export function planCleanup(files: readonly ConfFile[], pluginType: string): CleanupStep[] {
  const steps: CleanupStep[] = [];
  for (const f of files) {
    if (!isList(f.name)) continue;
    const doc = parse(f.content);
    if (doc === undefined || !Array.isArray(doc.plugins)) continue;
    const kept = withoutOurs(doc.plugins, pluginType);
    if (kept.length === doc.plugins.length) continue;
    if (kept.length === 0) steps.push({ name: f.name, action: "remove" });
    else steps.push({ name: f.name, action: "write", content: render({ ...doc, plugins: kept }) });
  }
  return steps;
}
