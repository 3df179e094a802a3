import { readFileSync } from "node:fs";
import { CniCode, CniError } from "../cni/errors.js";

// Just enough of a kubeconfig to reach the API server with a bearer token: the plugin must not
// load @kubernetes/client-node (start-up time), and the installer writes this file (JSON, which
// is valid YAML). Hand-written YAML kubeconfigs are parsed with the bundled yaml module.
export interface KubeTarget {
  server: string;
  token: string;
  ca: Buffer | undefined;
  insecureSkipTlsVerify: boolean;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function bad(path: string, msg: string): CniError {
  return new CniError(CniCode.InvalidConfig, `kubeconfig ${path}: ${msg}`);
}

function named(list: unknown, name: string, key: string, path: string): Json {
  if (!Array.isArray(list)) throw bad(path, `"${key}s" must be a list`);
  const entry = list.find((e: unknown) => isObject(e) && e.name === name) as Json | undefined;
  const inner = entry?.[key];
  if (!isObject(inner)) throw bad(path, `no ${key} named "${name}"`);
  return inner;
}

async function parseText(text: string, path: string): Promise<Json> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    try {
      // Loaded lazily: JSON kubeconfigs (ours) never pay for the YAML parser.
      const yaml = await import("yaml");
      doc = yaml.parse(text);
    } catch (err) {
      throw bad(path, `not JSON or YAML: ${(err as Error).message}`);
    }
  }
  if (!isObject(doc)) throw bad(path, "not a kubeconfig object");
  return doc;
}

function readText(file: string, what: string, path: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw bad(path, `cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

export async function loadKubeconfig(path: string): Promise<KubeTarget> {
  const doc = await parseText(readText(path, "file", path), path);
  const contextName = typeof doc["current-context"] === "string" ? doc["current-context"] : "";
  let clusterName: string;
  let userName: string;
  if (contextName !== "") {
    const ctx = named(doc.contexts, contextName, "context", path);
    clusterName = typeof ctx.cluster === "string" ? ctx.cluster : "";
    userName = typeof ctx.user === "string" ? ctx.user : "";
  } else {
    // No current context: a single-cluster file is unambiguous.
    const clusters = Array.isArray(doc.clusters) ? doc.clusters : [];
    const users = Array.isArray(doc.users) ? doc.users : [];
    const c: unknown = clusters[0];
    const u: unknown = users[0];
    clusterName = isObject(c) && typeof c.name === "string" ? c.name : "";
    userName = isObject(u) && typeof u.name === "string" ? u.name : "";
  }
  const cluster = named(doc.clusters, clusterName, "cluster", path);
  const server = cluster.server;
  if (typeof server !== "string" || !/^https?:\/\//.test(server)) throw bad(path, `cluster "${clusterName}" has no http(s) server`);
  let ca: Buffer | undefined;
  if (typeof cluster["certificate-authority-data"] === "string") {
    ca = Buffer.from(cluster["certificate-authority-data"], "base64");
  } else if (typeof cluster["certificate-authority"] === "string") {
    ca = Buffer.from(readText(cluster["certificate-authority"], "CA file", path));
  }
  let token = "";
  if (userName !== "") {
    const user = named(doc.users, userName, "user", path);
    if (typeof user.token === "string") token = user.token;
    else if (typeof user.tokenFile === "string") token = readText(user.tokenFile, "token file", path).trim();
  }
  return { server: server.replace(/\/+$/, ""), token, ca, insecureSkipTlsVerify: cluster["insecure-skip-tls-verify"] === true };
}
