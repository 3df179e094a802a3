import { CniCode, CniError } from "./cni/errors.js";
import { atLeast, isSupported, type CniVersion } from "./cni/version.js";
import { parseEnablementSelectors, SelectorError, type EnablementSelector } from "../src/cni-contract/index.js";

// The plugin's network configuration (stdin). Field names follow Istio's istio-cni plugin so an
// Istio-generated chain entry works unchanged.
export const DEFAULT_RUN_DIR = "/var/run/istio-cni";
export const DEFAULT_EXCLUDE_NAMESPACES: readonly string[] = ["kube-system"];
export const LOG_LEVELS = ["debug", "info", "warn", "error", "none"] as const;
export type PluginLogLevel = (typeof LOG_LEVELS)[number];

export interface PluginConfig {
  cniVersion: CniVersion;
  name: string;
  type: string;
  runDir: string;
  ambientEnabled: boolean;
  excludeNamespaces: string[];
  podNamespace: string;
  logLevel: PluginLogLevel;
  enablementSelectors: EnablementSelector[];
  kubeconfig: string;
  /** The previous plugin's result, kept raw: it is parsed (and validated) by ADD/CHECK only. */
  prevResult: unknown;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function invalid(msg: string): CniError {
  return new CniError(CniCode.InvalidConfig, `invalid network configuration: ${msg}`);
}

function str(conf: Json, key: string, dflt: string): string {
  const v = conf[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "string") throw invalid(`"${key}" must be a string`);
  return v;
}

function strList(conf: Json, key: string, dflt: readonly string[]): string[] {
  const v = conf[key];
  if (v === undefined || v === null) return [...dflt];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw invalid(`"${key}" must be a list of strings`);
  return v;
}

function selectors(conf: Json): EnablementSelector[] {
  try {
    return parseEnablementSelectors(conf.enablement_selectors);
  } catch (err) {
    if (err instanceof SelectorError) throw invalid(err.message);
    throw err;
  }
}

const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** The config's cniVersion (needed before anything else, e.g. to format an error). */
export function configVersion(conf: Json): string {
  const v = conf.cniVersion;
  return typeof v === "string" ? v : "";
}

/** Decodes stdin; a non-object or broken JSON is a decode failure (code 6). */
export function decodeStdin(stdin: string): Json {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(CniCode.DecodeFailure, `error decoding network config: ${(err as Error).message}`);
  }
  if (!isObject(parsed)) throw new CniError(CniCode.DecodeFailure, "error decoding network config: not a JSON object");
  return parsed;
}

/** Validates the network config and fills in defaults. */
export function parseConfig(conf: Json): PluginConfig {
  const version = configVersion(conf);
  if (!isSupported(version)) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      "incompatible CNI versions",
      `config is "${version || "(none)"}", plugin supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0`,
    );
  }
  const name = str(conf, "name", "");
  if (name === "") throw invalid("missing network name");
  if (!NETWORK_NAME.test(name)) throw invalid(`network name "${name}" has invalid characters`);
  const level = str(conf, "plugin_log_level", "info").toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw invalid(`"plugin_log_level" must be one of ${LOG_LEVELS.join(", ")}`);
  }
  // Istio's default (a Go bool): off unless the chain entry says so; our installer always sets it.
  const ambient = conf.ambient_enabled ?? false;
  if (typeof ambient !== "boolean") throw invalid(`"ambient_enabled" must be true or false`);
  // Istio nests the kubeconfig under "kubernetes"; a top-level field wins.
  const kube = isObject(conf.kubernetes) ? str(conf.kubernetes, "kubeconfig", "") : "";
  return {
    cniVersion: version,
    name,
    type: str(conf, "type", ""),
    runDir: str(conf, "cni_agent_run_dir", DEFAULT_RUN_DIR) || DEFAULT_RUN_DIR,
    ambientEnabled: ambient,
    excludeNamespaces: strList(conf, "exclude_namespaces", DEFAULT_EXCLUDE_NAMESPACES),
    podNamespace: str(conf, "pod_namespace", ""),
    logLevel: level as PluginLogLevel,
    enablementSelectors: selectors(conf),
    kubeconfig: str(conf, "kubeconfig", "") || kube,
    prevResult: conf.prevResult,
  };
}

export function commandAllowed(command: string, version: CniVersion): CniError | undefined {
  if (command === "CHECK" && !atLeast(version, "0.4.0")) {
    return new CniError(CniCode.IncompatibleVersion, "config version does not allow CHECK", `cniVersion ${version} < 0.4.0`);
  }
  if ((command === "STATUS" || command === "GC") && !atLeast(version, "1.1.0")) {
    return new CniError(CniCode.IncompatibleVersion, `config version does not allow ${command}`, `cniVersion ${version} < 1.1.0`);
  }
  return undefined;
}
