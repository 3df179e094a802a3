import { existsSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { ApiException, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { isMap, isSeq, parseDocument, type Document } from "yaml";
import { errorMessage } from "../shared/errors.js";
import { CommandFailedError, UnreachableError, UsageError } from "./errors.js";

// enroll/unenroll = the namespace label istio.io/dataplane-mode=ambient (DESIGN §6). With a
// kubeconfig it is a merge patch on the Namespace; on a cluster-free node it is an edit of the
// agent's inventory file(s), and, when ztunnel's local config is given, the namespace's
// workloads switch to protocol HBONE (TCP on unenroll) — what istiod would publish.

export const MODE_LABEL = "istio.io/dataplane-mode";
const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export interface EnrollResult {
  namespace: string;
  enrolled: boolean;
  /** Where the change was made: "kubernetes" or file paths. */
  changed: string[];
  unchanged: string[];
}

export function checkNamespace(ns: string | undefined): string {
  if (ns === undefined || ns === "") throw new UsageError("missing <namespace> (example: ambientctl enroll demo)");
  if (!NAMESPACE_NAME.test(ns)) throw new UsageError(`"${ns}" is not a namespace name (lower case letters, digits and '-')`);
  return ns;
}

/** Writes via a temp file + rename, so the agent's file watcher never reads half a file. */
async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.ambientctl-${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

async function loadDoc(path: string, what: string): Promise<Document> {
  if (!existsSync(path)) throw new UsageError(`${what} ${path} does not exist (check --inventory / --local-config)`);
  const doc = parseDocument(await readFile(path, "utf8"));
  if (doc.errors.length > 0) throw new CommandFailedError(`${path} is not valid YAML: ${doc.errors[0]?.message ?? "?"}; fix the file first`);
  return doc;
}

/** Sets or removes the label on the namespace entry (creating it on enroll). True when the file changed. */
export async function labelInInventory(path: string, ns: string, enroll: boolean): Promise<boolean> {
  const doc = await loadDoc(path, "inventory");
  if (doc.contents === null) doc.contents = doc.createNode({});
  let list = doc.get("namespaces");
  if (list === undefined || list === null) {
    if (!enroll) return false;
    doc.set("namespaces", doc.createNode([]));
    list = doc.get("namespaces");
  }
  if (!isSeq(list)) throw new CommandFailedError(`${path}: "namespaces" must be a list`);
  const entry = list.items.find((i) => isMap(i) && i.get("name") === ns);
  if (entry === undefined) {
    if (!enroll) return false;
    list.add(doc.createNode({ name: ns, labels: { [MODE_LABEL]: "ambient" } }));
    await writeAtomic(path, doc.toString());
    return true;
  }
  if (!isMap(entry)) throw new CommandFailedError(`${path}: namespace entry "${ns}" must be a map`);
  const labels = entry.get("labels");
  const current = isMap(labels) ? labels.get(MODE_LABEL) : undefined;
  if (enroll) {
    if (current === "ambient") return false;
    if (isMap(labels)) labels.set(MODE_LABEL, "ambient");
    else entry.set("labels", doc.createNode({ [MODE_LABEL]: "ambient" }));
  } else {
    if (current === undefined || !isMap(labels)) return false;
    labels.delete(MODE_LABEL);
  }
  await writeAtomic(path, doc.toString());
  return true;
}

/** Sets `protocol` of the namespace's workloads in ztunnel's local config. True when the file changed. */
export async function protocolInLocalConfig(path: string, ns: string, enroll: boolean): Promise<boolean> {
  const doc = await loadDoc(path, "local config");
  const list = doc.get("workloads");
  if (!isSeq(list)) return false;
  const want = enroll ? "HBONE" : "TCP";
  let changed = false;
  for (const w of list.items) {
    if (!isMap(w) || w.get("namespace") !== ns) continue;
    if (w.get("protocol") === want) continue;
    w.set("protocol", want);
    changed = true;
  }
  if (changed) await writeAtomic(path, doc.toString());
  return changed;
}

export interface LocalTargets {
  inventories: string[];
  localConfig: string | undefined;
}

export async function enrollLocal(ns: string, enroll: boolean, t: LocalTargets): Promise<EnrollResult> {
  const res: EnrollResult = { namespace: ns, enrolled: enroll, changed: [], unchanged: [] };
  for (const inv of t.inventories) (await labelInInventory(inv, ns, enroll) ? res.changed : res.unchanged).push(inv);
  if (t.localConfig !== undefined) (await protocolInLocalConfig(t.localConfig, ns, enroll) ? res.changed : res.unchanged).push(t.localConfig);
  return res;
}

export async function enrollKube(kc: KubeConfig, ns: string, enroll: boolean): Promise<EnrollResult> {
  const core = kc.makeApiClient(CoreV1Api);
  const server = kc.getCurrentCluster()?.server ?? "(no server)";
  let before: string | undefined;
  try {
    const cur = await core.readNamespace({ name: ns });
    before = cur.metadata?.labels?.[MODE_LABEL];
  } catch (err) {
    throw kubeError(err, ns, server);
  }
  const res: EnrollResult = { namespace: ns, enrolled: enroll, changed: [], unchanged: [] };
  if ((enroll && before === "ambient") || (!enroll && before === undefined)) {
    res.unchanged.push("kubernetes");
    return res;
  }
  try {
    // Merge patch: null deletes the label.
    await core.patchNamespace(
      { name: ns, body: { metadata: { labels: { [MODE_LABEL]: enroll ? "ambient" : null } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  } catch (err) {
    throw kubeError(err, ns, server);
  }
  res.changed.push("kubernetes");
  return res;
}

function kubeError(err: unknown, ns: string, server: string): Error {
  if (err instanceof ApiException) {
    const code = err.code;
    if (code === 404) return new CommandFailedError(`namespace "${ns}" does not exist on ${server} (create it first: kubectl create namespace ${ns})`);
    if (code === 401 || code === 403) return new CommandFailedError(`the API server ${server} refused (${code}): your kubeconfig user may not patch namespaces`);
    return new CommandFailedError(`the API server ${server} answered ${code}: ${String(err.body).slice(0, 200)}`);
  }
  return new UnreachableError(`cannot reach the API server ${server}: ${errorMessage(err)} (check KUBECONFIG / --kubeconfig)`, { cause: err });
}

/** A kubeconfig to use, or undefined for local mode: --kubeconfig, then KUBECONFIG, then ~/.kube/config. */
export function findKubeconfig(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): string | undefined {
  if (flag !== undefined) {
    if (!existsSync(flag)) throw new UsageError(`--kubeconfig ${flag} does not exist`);
    return flag;
  }
  const fromEnv = env.KUBECONFIG?.split(":").find((p) => p !== "" && existsSync(p));
  if (fromEnv !== undefined) return fromEnv;
  const home = env.HOME;
  if (home !== undefined && existsSync(`${home}/.kube/config`)) return `${home}/.kube/config`;
  return undefined;
}

export function loadKubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(path);
  } catch (err) {
    throw new UsageError(`cannot load kubeconfig ${path}: ${errorMessage(err)}`);
  }
  return kc;
}
