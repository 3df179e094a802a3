import { isIP } from "node:net";
import { parse } from "yaml";
import { InventoryError } from "../errors.js";
import type { PodView } from "./model.js";

// The local inventory (cluster-free nodes, the demo): which namespaces and pods exist, in the
// shape of the Kubernetes objects the agent would otherwise watch.
//
//   namespaces:
//     - name: mesh
//       labels: { istio.io/dataplane-mode: ambient }
//   pods:
//     - name: web
//       namespace: mesh
//       uid: 9f0e2c1a-0000-4000-8000-000000000001
//       serviceAccount: web          # default "default"
//       labels: { app: web }
//       ips: [10.244.1.5]            # optional: verifies /proc scan hits, fills the ipset
//       hostNetwork: false           # optional
//       annotations: {}              # optional (sidecar.istio.io/status opts out)

export interface Inventory {
  namespaces: Map<string, Record<string, string>>;
  pods: PodView[];
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const KNOWN_POD_KEYS = new Set(["name", "namespace", "uid", "serviceAccount", "labels", "annotations", "ips", "hostNetwork"]);

function stringMap(v: unknown, where: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw new InventoryError(`${where} must be a map of strings`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== "string") throw new InventoryError(`${where}.${k} must be a string (quote values like "true")`);
    out[k] = x;
  }
  return out;
}

function name(v: unknown, where: string): string {
  if (typeof v !== "string" || !NAME.test(v)) throw new InventoryError(`${where} must be a DNS name (lower case letters, digits, '-', '.')`);
  return v;
}

export function parseInventory(text: string, file = "inventory"): Inventory {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new InventoryError(`${file} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  if (doc === null || doc === undefined) doc = {};
  if (!isObject(doc)) throw new InventoryError(`${file} must be a map with "namespaces" and "pods"`);
  for (const k of Object.keys(doc)) {
    if (k !== "namespaces" && k !== "pods") throw new InventoryError(`${file}: unknown key "${k}" (known: namespaces, pods)`);
  }
  const namespaces = new Map<string, Record<string, string>>();
  const nsList = doc.namespaces ?? [];
  if (!Array.isArray(nsList)) throw new InventoryError(`${file}: "namespaces" must be a list`);
  nsList.forEach((n: unknown, i) => {
    if (!isObject(n)) throw new InventoryError(`${file}: namespaces[${i}] must be a map`);
    const nsName = name(n.name, `${file}: namespaces[${i}].name`);
    if (namespaces.has(nsName)) throw new InventoryError(`${file}: namespace "${nsName}" is listed twice`);
    namespaces.set(nsName, { "kubernetes.io/metadata.name": nsName, ...stringMap(n.labels, `${file}: namespaces[${i}].labels`) });
  });
  const podList = doc.pods ?? [];
  if (!Array.isArray(podList)) throw new InventoryError(`${file}: "pods" must be a list`);
  const uids = new Set<string>();
  const keys = new Set<string>();
  const pods = podList.map((p: unknown, i): PodView => {
    const where = `${file}: pods[${i}]`;
    if (!isObject(p)) throw new InventoryError(`${where} must be a map`);
    for (const k of Object.keys(p)) if (!KNOWN_POD_KEYS.has(k)) throw new InventoryError(`${where}: unknown key "${k}" (known: ${[...KNOWN_POD_KEYS].join(", ")})`);
    const podName = name(p.name, `${where}.name`);
    const namespace = name(p.namespace ?? "default", `${where}.namespace`);
    if (typeof p.uid !== "string" || !/^[A-Za-z0-9-]{1,128}$/.test(p.uid)) throw new InventoryError(`${where}.uid must be a string of letters, digits and '-'`);
    if (uids.has(p.uid)) throw new InventoryError(`${where}: uid ${p.uid} is used twice`);
    if (keys.has(`${namespace}/${podName}`)) throw new InventoryError(`${where}: pod ${namespace}/${podName} is listed twice`);
    uids.add(p.uid);
    keys.add(`${namespace}/${podName}`);
    const sa = p.serviceAccount ?? "default";
    if (typeof sa !== "string" || sa === "") throw new InventoryError(`${where}.serviceAccount must be a non-empty string`);
    const ips = p.ips ?? [];
    if (!Array.isArray(ips) || ips.some((ip) => typeof ip !== "string" || isIP(ip) === 0)) throw new InventoryError(`${where}.ips must be a list of IP addresses`);
    if (p.hostNetwork !== undefined && typeof p.hostNetwork !== "boolean") throw new InventoryError(`${where}.hostNetwork must be true or false`);
    return {
      uid: p.uid,
      name: podName,
      namespace,
      serviceAccount: sa,
      labels: stringMap(p.labels, `${where}.labels`),
      annotations: stringMap(p.annotations, `${where}.annotations`),
      hostNetwork: p.hostNetwork === true,
      ips: ips as string[],
      terminal: false,
      requiresIps: false,
    };
  });
  return { namespaces, pods };
}
