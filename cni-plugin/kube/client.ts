import type { IncomingMessage } from "node:http";
import type { request as httpsRequest } from "node:https";
import { CniCode, CniError } from "../cni/errors.js";
import type { PodFacts } from "../../src/cni-contract/index.js";
import type { KubeTarget } from "./kubeconfig.js";

// Two GETs against the API server (pod, namespace) with node's http/https, bounded by a deadline.
export const KUBE_TIMEOUT_MS = 5000;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObject(v)) return out;
  for (const [k, val] of Object.entries(v)) if (typeof val === "string") out[k] = val;
  return out;
}

type Requester = typeof httpsRequest;

// Loaded on demand: node:https alone adds ~9 ms to every start of the plugin, and only pods of a
// cluster-backed node with a kubeconfig ever reach the API server.
async function requester(server: string): Promise<Requester> {
  return server.startsWith("https:") ? (await import("node:https")).request : (await import("node:http")).request;
}

function getJson(request: Requester, target: KubeTarget, path: string, deadline: number): Promise<Json> {
  const url = new URL(target.server + path);
  const headers: Record<string, string> = { Accept: "application/json", "User-Agent": "ambient-cni" };
  if (target.token !== "") headers.Authorization = `Bearer ${target.token}`;
  return new Promise<Json>((resolve, reject) => {
    const onResponse = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString("utf8");
        if (res.statusCode !== 200) {
          reject(
            new CniError(
              res.statusCode === 404 ? CniCode.Internal : CniCode.TryAgainLater,
              `Kubernetes API GET ${path}: HTTP ${res.statusCode ?? 0}`,
              text.slice(0, 500),
            ),
          );
          return;
        }
        try {
          const v: unknown = JSON.parse(text);
          if (!isObject(v)) throw new Error("not an object");
          resolve(v);
        } catch (err) {
          reject(new CniError(CniCode.TryAgainLater, `Kubernetes API GET ${path}: bad JSON: ${(err as Error).message}`));
        }
      });
    };
    const opts = { method: "GET", headers, agent: false as const };
    const tls = url.protocol === "https:" ? { ca: target.ca, rejectUnauthorized: !target.insecureSkipTlsVerify } : {};
    const req = request(url, { ...opts, ...tls }, onResponse);
    const timer = setTimeout(() => {
      const err = new CniError(CniCode.TryAgainLater, `Kubernetes API GET ${path}: no answer in time`);
      reject(err);
      req.destroy(err);
    }, Math.max(1, deadline - Date.now()));
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err instanceof CniError ? err : new CniError(CniCode.TryAgainLater, `Kubernetes API GET ${path}: ${err.message}`));
    });
    req.end();
  });
}

export interface PodAndNamespace {
  pod: PodFacts;
  namespaceLabels: Record<string, string>;
}

export async function fetchPodAndNamespace(
  target: KubeTarget,
  namespace: string,
  name: string,
  timeoutMs = KUBE_TIMEOUT_MS,
): Promise<PodAndNamespace> {
  const deadline = Date.now() + timeoutMs;
  const ns = encodeURIComponent(namespace);
  const request = await requester(target.server);
  const [pod, nsObj] = await Promise.all([
    getJson(request, target, `/api/v1/namespaces/${ns}/pods/${encodeURIComponent(name)}`, deadline),
    getJson(request, target, `/api/v1/namespaces/${ns}`, deadline),
  ]);
  const meta = isObject(pod.metadata) ? pod.metadata : {};
  const spec = isObject(pod.spec) ? pod.spec : {};
  const nsMeta = isObject(nsObj.metadata) ? nsObj.metadata : {};
  return {
    pod: { labels: stringMap(meta.labels), annotations: stringMap(meta.annotations), hostNetwork: spec.hostNetwork === true },
    namespaceLabels: stringMap(nsMeta.labels),
  };
}
