import * as k8s from "@kubernetes/client-node";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, posix, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigMap, Namespace, ServiceAccount } from "kubernetes-models/v1";
import { DaemonSet } from "kubernetes-models/apps/v1";
import { ClusterRole, ClusterRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { DEFAULT_RUN_DIR } from "../../cni-plugin/config.js";
import { loadAgentConfig } from "../../src/agent/config.js";
import { ENV_NAMES, loadConfig, parseDuration } from "../../src/ztunnel/config.js";
import { ROOT_CERT_FILE, ROOT_KEY_FILE } from "../../src/ztunnel/tls/ca.js";

// deploy/ kept honest against the code: every manifest validates against the Kubernetes schemas
// (and has no field the API server would silently drop), commands run files the build really
// produces and the image really holds, env names are exactly those the binaries read, and host
// paths are the ones the code defaults to.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DEPLOY = join(ROOT, "deploy");

type Obj = Record<string, unknown>;
interface Doc {
  file: string;
  obj: Obj;
}

function loadDocs(dir = DEPLOY): Doc[] {
  const out: Doc[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml").sort()) {
    for (const d of parseAllDocuments(readFileSync(join(dir, file), "utf8"))) {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
      const obj = d.toJS() as Obj | null;
      if (obj !== null) out.push({ file, obj });
    }
  }
  return out;
}

const docs = loadDocs();
/** deploy/uninstall/: applied by hand during uninstall, not by the kustomization. */
const UNINSTALL_DOCS = loadDocs(join(DEPLOY, "uninstall"));
const kindOf = (d: Doc): string => `${String(d.obj.apiVersion)}/${String(d.obj.kind)}`;
const nameOf = (o: Obj): string => String((o.metadata as Obj).name);

function find(kind: string, name: string): Obj {
  const d = docs.find((x) => x.obj.kind === kind && nameOf(x.obj) === name);
  if (!d) throw new Error(`no ${kind} ${name} in deploy/`);
  return d.obj;
}

// ---- typed views of the parts we inspect ----
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string }; configMapKeyRef?: { name: string; key: string }; secretKeyRef?: unknown };
}
interface Mount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
  mountPropagation?: string;
}
interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  volumeMounts?: Mount[];
  ports?: { containerPort: number; hostPort?: number }[];
  readinessProbe?: { httpGet?: { path: string; port: number | string } };
  securityContext?: { privileged?: boolean; allowPrivilegeEscalation?: boolean; capabilities?: { add?: string[]; drop?: string[] } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}
interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  secret?: { secretName: string; items?: { key: string; path: string }[] };
}
interface PodSpec {
  containers: Container[];
  volumes?: Volume[];
  hostNetwork?: boolean;
  serviceAccountName?: string;
  priorityClassName?: string;
  tolerations?: { operator?: string; key?: string; effect?: string }[];
  terminationGracePeriodSeconds?: number;
}
interface DaemonSetObj {
  metadata: { name: string; namespace: string };
  spec: {
    selector: { matchLabels: Record<string, string> };
    updateStrategy?: { type?: string; rollingUpdate?: Record<string, unknown> };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
}

const ds = (name: string): DaemonSetObj => find("DaemonSet", name) as unknown as DaemonSetObj;
const only = (d: DaemonSetObj): Container => {
  expect(d.spec.template.spec.containers).toHaveLength(1);
  return d.spec.template.spec.containers[0]!;
};
const AGENT = ds("istio-cni-node");
const ZTUNNEL = ds("ztunnel");
const SAMPLE_NODE = "node-a";

/** The env a container gets at run time: downward API and ConfigMap references resolved. */
function resolveEnv(d: DaemonSetObj, c: Container): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) out[e.name] = e.value;
    else if (e.valueFrom?.fieldRef) {
      const field = e.valueFrom.fieldRef.fieldPath;
      if (field === "spec.nodeName") out[e.name] = SAMPLE_NODE;
      else if (field === "metadata.namespace") out[e.name] = d.metadata.namespace;
      else throw new Error(`${e.name}: fieldRef ${field} is not resolved by this test`);
    } else if (e.valueFrom?.configMapKeyRef) {
      const ref = e.valueFrom.configMapKeyRef;
      const cm = find("ConfigMap", ref.name) as { metadata: { namespace: string }; data: Record<string, string> };
      expect(cm.metadata.namespace, `ConfigMap ${ref.name} must be in the pod's namespace`).toBe(d.metadata.namespace);
      const v = cm.data[ref.key];
      if (v === undefined) throw new Error(`${e.name}: ConfigMap ${ref.name} has no key ${ref.key}`);
      out[e.name] = v;
    } else throw new Error(`${e.name}: unsupported env source ${JSON.stringify(e.valueFrom)}`);
  }
  return out;
}

/** The host path behind a path inside the container (longest mount prefix), with its mount. */
function hostPathOf(d: DaemonSetObj, c: Container, path: string): { host: string; mount: Mount; volume: Volume } | undefined {
  let best: Mount | undefined;
  for (const m of c.volumeMounts ?? []) {
    if ((path === m.mountPath || path.startsWith(m.mountPath + "/")) && (!best || m.mountPath.length > best.mountPath.length)) best = m;
  }
  if (!best) return undefined;
  const volume = d.spec.template.spec.volumes?.find((v) => v.name === best.name);
  if (!volume?.hostPath) return undefined;
  return { host: posix.join(volume.hostPath.path, path.slice(best.mountPath.length)), mount: best, volume };
}

// ---- which environment variables a binary reads ----

/** Relative imports of a module's source, as .ts paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)["'](\.{1,2}\/[^"']+)["']/g)) {
    out.push(resolve(dirname(file), m[1]!.replace(/\.js$/, ".ts")));
  }
  return out.filter((p) => existsSync(p));
}

/** Every source file an entry point loads (static graph of relative imports). */
function moduleGraph(entry: string): string[] {
  const seen = new Set<string>([entry]);
  const queue = [entry];
  while (queue.length > 0) {
    for (const dep of importsOf(queue.shift()!)) {
      if (!seen.has(dep)) {
        seen.add(dep);
        queue.push(dep);
      }
    }
  }
  return [...seen];
}

/**
 * `process.env.X`, `process.env["X"]`, `process.env[CONST]` with `const CONST = "X"`, and the
 * names in an exported `..._ENV_NAMES = [...]` list or `..._ENV = { NAME: ... }` schema (config
 * modules that read `env[name]`).
 */
function processEnvReads(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const names = new Set<string>();
  for (const m of text.matchAll(/process\.env\.([A-Za-z_][A-Za-z0-9_]*)/g)) names.add(m[1]!);
  for (const m of text.matchAll(/process\.env\[\s*["']([A-Za-z0-9_]+)["']\s*\]/g)) names.add(m[1]!);
  for (const m of text.matchAll(/process\.env\[\s*([A-Za-z_$][\w$]*)\s*\]/g)) {
    const c = new RegExp(`const\\s+${m[1]!}\\s*=\\s*["']([A-Za-z0-9_]+)["']`).exec(text);
    if (c) names.add(c[1]!);
  }
  for (const m of text.matchAll(/export const [A-Z_]*ENV_NAMES\s*=\s*\[([^\]]*)\]/g)) {
    for (const n of m[1]!.matchAll(/["']([A-Za-z0-9_]+)["']/g)) names.add(n[1]!);
  }
  // A configuration schema (src/shared/config): `export const X_ENV = { NAME: variable(...), ... }`.
  for (const m of text.matchAll(/export const [A-Z_]*_ENV\s*=\s*\{([\s\S]*?)\n\}/g)) {
    for (const n of m[1]!.matchAll(/^\s+([A-Z][A-Z0-9_]*):\s/gm)) names.add(n[1]!);
  }
  return [...names];
}

/** Names a config loader asks for, recorded through a Proxy over the given env. */
function recordedReads(load: (env: Record<string, string | undefined>) => unknown, base: Record<string, string>): string[] {
  const names = new Set<string>();
  const env = new Proxy(base, {
    get(target, prop) {
      if (typeof prop === "string") names.add(prop);
      return typeof prop === "string" ? target[prop] : undefined;
    },
  });
  load(env);
  return [...names];
}

function envReadBy(entry: string, loaders: string[]): Set<string> {
  const names = new Set<string>(loaders);
  for (const f of moduleGraph(join(ROOT, entry))) for (const n of processEnvReads(f)) names.add(n);
  return names;
}

const AGENT_READS = envReadBy("src/agent/main.ts", recordedReads(loadAgentConfig, { NODE_NAME: SAMPLE_NODE }));
const ZTUNNEL_READS = envReadBy("src/ztunnel/main.ts", [...recordedReads(loadConfig, {}), ...ENV_NAMES]);

// ---- the image layout, from deploy/Containerfile ----
interface Copy {
  from: string | undefined;
  src: string;
  dst: string;
}
function runtimeStage(): { workdir: string; copies: Copy[] } {
  const text = readFileSync(join(DEPLOY, "Containerfile"), "utf8").replace(/\\\n/g, " ");
  const stages = text.split(/^FROM\s/m);
  const last = stages[stages.length - 1]!;
  let workdir = "/";
  const copies: Copy[] = [];
  for (const line of last.split("\n")) {
    const w = /^WORKDIR\s+(\S+)/.exec(line);
    if (w) workdir = posix.resolve(workdir, w[1]!);
    const c = /^COPY\s+(?:--from=(\S+)\s+)?(\S+)\s+(\S+)\s*$/.exec(line);
    if (c) {
      const [src, rawDst] = [c[2]!, c[3]!];
      // A file copied onto a directory destination ("./", "dir/") keeps its name.
      const intoDir = !src.endsWith("/") && (rawDst.endsWith("/") || rawDst === ".");
      const dst = posix.resolve(workdir, rawDst, intoDir ? posix.basename(src) : ".");
      copies.push({ from: c[1], src, dst: src.endsWith("/") ? dst + "/" : dst });
    }
  }
  return { workdir, copies };
}

/**
 * Repository path behind an absolute path in the image: a build output (COPY --from=build
 * /src/...) or a file of the build context (COPY <repo path>).
 */
function repoPathOfImagePath(imagePath: string): string | undefined {
  for (const c of runtimeStage().copies) {
    let src: string;
    if (c.from === undefined) src = c.src;
    else if (c.from === "build" && c.src.startsWith("/src/")) src = c.src.slice("/src/".length);
    else continue;
    if (!c.src.endsWith("/")) {
      if (imagePath === c.dst) return src;
      continue;
    }
    if (imagePath.startsWith(c.dst)) return posix.join(src, imagePath.slice(c.dst.length));
  }
  return undefined;
}

// ---- strict field check: client-node's generated models know every field of every type ----
type AttrMap = { baseName: string; type: string }[];
function modelOf(type: string): (() => AttrMap) | undefined {
  const cls = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => AttrMap } | undefined>)[type];
  return cls?.getAttributeTypeMap?.bind(cls);
}
function unknownFields(value: unknown, type: string, path: string, out: string[]): string[] {
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, arr[1]!, `${path}[${i}]`, out));
    return out;
  }
  const attrs = modelOf(type)?.();
  if (!attrs || typeof value !== "object" || value === null || Array.isArray(value)) return out;
  for (const [k, v] of Object.entries(value)) {
    const a = attrs.find((x) => x.baseName === k);
    if (!a) out.push(`${path}.${k}`);
    else unknownFields(v, a.type, `${path}.${k}`, out);
  }
  return out;
}

const MODELS: Record<string, { validator: new (o: never) => { validate(): void }; clientType: string }> = {
  "v1/Namespace": { validator: Namespace as never, clientType: "V1Namespace" },
  "v1/ConfigMap": { validator: ConfigMap as never, clientType: "V1ConfigMap" },
  "v1/ServiceAccount": { validator: ServiceAccount as never, clientType: "V1ServiceAccount" },
  "apps/v1/DaemonSet": { validator: DaemonSet as never, clientType: "V1DaemonSet" },
  "rbac.authorization.k8s.io/v1/ClusterRole": { validator: ClusterRole as never, clientType: "V1ClusterRole" },
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": { validator: ClusterRoleBinding as never, clientType: "V1ClusterRoleBinding" },
};

function validateDoc(obj: Obj): string[] {
  const m = MODELS[`${String(obj.apiVersion)}/${String(obj.kind)}`];
  if (!m) return [`no schema known for ${String(obj.apiVersion)}/${String(obj.kind)}`];
  const errors: string[] = [];
  try {
    new m.validator(structuredClone(obj) as never).validate();
  } catch (err) {
    errors.push((err as Error).message);
  }
  for (const f of unknownFields(obj, m.clientType, "", [])) errors.push(`unknown field ${f}`);
  return errors;
}

describe("deploy/ manifests: schemas", () => {
  it("every document validates against the Kubernetes schemas and has no unknown field", () => {
    expect(docs.map(kindOf).sort()).toEqual(
      [
        "apps/v1/DaemonSet",
        "apps/v1/DaemonSet",
        "rbac.authorization.k8s.io/v1/ClusterRole",
        "rbac.authorization.k8s.io/v1/ClusterRole",
        "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
        "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
        "v1/ConfigMap",
        "v1/Namespace",
        "v1/ServiceAccount",
        "v1/ServiceAccount",
      ].sort(),
    );
    for (const d of [...docs, ...UNINSTALL_DOCS]) expect(validateDoc(d.obj), `${d.file}: ${kindOf(d)} ${nameOf(d.obj)}`).toEqual([]);
  });

  it("the checks catch a broken manifest (wrong type, missing selector, misspelled field)", () => {
    const broken = structuredClone(AGENT) as unknown as { spec: Record<string, unknown> & DaemonSetObj["spec"] };
    (broken.spec.template.spec.containers[0] as unknown as Record<string, unknown>).image = 42;
    expect(validateDoc(broken as unknown as Obj).join()).toMatch(/image must be string/);
    const noSelector = structuredClone(AGENT) as unknown as { spec: Record<string, unknown> };
    delete noSelector.spec.selector;
    expect(validateDoc(noSelector as unknown as Obj).join()).toMatch(/selector/);
    const typo = structuredClone(AGENT);
    (typo.spec.template.spec.containers[0]!.volumeMounts![3] as unknown as Record<string, unknown>).mountPropogation = "HostToContainer";
    expect(validateDoc(typo as unknown as Obj)).toEqual([".spec.template.spec.containers[0].volumeMounts[3].mountPropogation"].map((f) => `unknown field ${f}`));
  });

  it("kustomization.yaml lists every manifest file exactly once", () => {
    const k = parseAllDocuments(readFileSync(join(DEPLOY, "kustomization.yaml"), "utf8"))[0]!.toJS() as { resources: string[]; images?: { name: string }[] };
    const files = readdirSync(DEPLOY).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml").sort();
    expect([...k.resources].sort()).toEqual(files);
    expect(new Set(k.resources).size).toBe(k.resources.length);
    // The image override applies to the image both DaemonSets name.
    const images = new Set([AGENT, ZTUNNEL].map((d) => only(d).image));
    expect(images.size).toBe(1);
    expect(k.images?.map((i) => i.name)).toEqual([...images].map((i) => String(i).split(":")[0]));
  });

  it("rules the API server enforces beyond the schema hold", () => {
    for (const d of [AGENT, ZTUNNEL]) {
      const spec = d.spec.template.spec;
      // selector ⊆ template labels, else the API rejects the DaemonSet
      for (const [k, v] of Object.entries(d.spec.selector.matchLabels)) expect(d.spec.template.metadata.labels[k]).toBe(v);
      const c = only(d);
      const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
      expect(volumes.size).toBe((spec.volumes ?? []).length);
      for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name), `${d.metadata.name}: mount ${m.name} has no volume`).toBe(true);
      // allowPrivilegeEscalation=false is refused together with SYS_ADMIN
      if (c.securityContext?.capabilities?.add?.includes("SYS_ADMIN")) expect(c.securityContext.allowPrivilegeEscalation).not.toBe(false);
      // hostNetwork: a declared hostPort must equal the containerPort
      if (spec.hostNetwork) for (const p of c.ports ?? []) if (p.hostPort !== undefined) expect(p.hostPort).toBe(p.containerPort);
      // every namespaced object lives in the one namespace deploy/ creates
      expect(d.metadata.namespace).toBe(nameOf(find("Namespace", d.metadata.namespace)));
    }
  });
});

describe("deploy/ manifests: commands run real entry points", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin?: Record<string, string> };
  const tsconfig = JSON.parse(readFileSync(join(ROOT, "tsconfig.json"), "utf8")) as { compilerOptions: { outDir: string; rootDir: string } };

  it.each([
    ["istio-cni-node", "src/agent/main.ts"],
    ["ztunnel", "src/ztunnel/main.ts"],
  ])("%s runs node on the image path of the compiled %s", (name, source) => {
    const c = only(ds(name));
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    expect(argv[0]).toBe("node");
    const script = argv[1]!;
    // The image path maps (Containerfile COPY --from=build) to a build output...
    const built = repoPathOfImagePath(script);
    expect(built, `${script} is not copied into the image`).toBeDefined();
    // ...which tsc produces from this source (outDir/rootDir mirror the tree).
    expect(tsconfig.compilerOptions).toMatchObject({ outDir: "dist", rootDir: "." });
    expect(built).toBe(posix.join("dist", source.replace(/\.ts$/, ".js")));
    expect(existsSync(join(ROOT, source))).toBe(true);
    const firstLine = readFileSync(join(ROOT, source), "utf8").split("\n")[0];
    expect(firstLine).toBe("#!/usr/bin/env node");
    // After `npm run build` (npm test builds first) the compiled entry is really there.
    if (existsSync(join(ROOT, "dist", "src"))) expect(existsSync(join(ROOT, built!))).toBe(true);
  });

  it("the agent's command is the package's cni-agent bin", () => {
    const script = [...(only(AGENT).command ?? [])][1]!;
    expect(pkg.bin?.["cni-agent"]).toBe(repoPathOfImagePath(script));
  });

  it("the plugin executable the agent installs is the one the image holds", () => {
    const env = resolveEnv(AGENT, only(AGENT));
    expect(repoPathOfImagePath(env.AMBIENT_CNI_PLUGIN_BINARY!)).toBe("dist/cni-plugin/ambient-cni");
    // scripts/build-cni-plugin.mjs writes it there.
    const script = readFileSync(join(ROOT, "scripts", "build-cni-plugin.mjs"), "utf8");
    expect(script).toMatch(/outDir = join\(root, "dist", "cni-plugin"\)/);
    expect(script).toMatch(/exe = join\(outDir, "ambient-cni"\)/);
  });
});

describe("deploy/ manifests: environment", () => {
  it("reading the code finds the variables (sanity: the extraction itself works)", () => {
    for (const n of ["NODE_NAME", "POD_NAMESPACE", "CNI_AGENT_RUN_DIR", "PROC_ROOT", "LOG_LEVEL", "KUBERNETES_SERVICE_HOST"]) expect(AGENT_READS).toContain(n);
    for (const n of ["NODE_NAME", "CA_ROOT_DIR", "INPOD_UDS", "TRUST_DOMAIN", "LOG_LEVEL", "ZTUNNEL_DEBUG_ENDPOINTS"]) expect(ZTUNNEL_READS).toContain(n);
    // The exported list is found by reading the source, too.
    const fromSource = envReadBy("src/ztunnel/main.ts", []);
    for (const n of ENV_NAMES) expect(fromSource).toContain(n);
    expect(AGENT_READS).not.toContain("CA_ROOT_DIR");
    expect(ZTUNNEL_READS).not.toContain("CNI_AGENT_RUN_DIR");
  });

  it.each([
    ["istio-cni-node", AGENT_READS],
    ["ztunnel", ZTUNNEL_READS],
  ] as const)("%s sets only variables its binary reads, each once", (name, reads) => {
    const names = (only(ds(name)).env ?? []).map((e) => e.name);
    expect(names.filter((n) => !reads.has(n))).toEqual([]);
    expect(new Set(names).size).toBe(names.length);
  });

  it("the agent's env loads, with the node name and namespace from the downward API", () => {
    const env = resolveEnv(AGENT, only(AGENT));
    const cfg = loadAgentConfig(env);
    expect(cfg).toMatchObject({ nodeName: SAMPLE_NODE, podNamespace: "istio-system", inventoryPath: undefined, kubeconfig: undefined, httpPort: 8000 });
    const byName = new Map((only(AGENT).env ?? []).map((e) => [e.name, e]));
    expect(byName.get("NODE_NAME")?.valueFrom?.fieldRef?.fieldPath).toBe("spec.nodeName");
    expect(byName.get("POD_NAMESPACE")?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.namespace");
    // NODE_NAME is required in Kubernetes mode: without it the agent refuses to start.
    const { NODE_NAME: _, ...withoutNode } = env;
    expect(() => loadAgentConfig(withoutNode)).toThrow(/NODE_NAME is required/);
    // The plugin must skip the agent's own pods: the installer passes podNamespace to it.
    expect(cfg.podNamespace).toBe(AGENT.metadata.namespace);
  });

  it("ztunnel's env loads, names its node, and points CA_ROOT_DIR at the mounted mesh root", () => {
    const c = only(ZTUNNEL);
    const env = resolveEnv(ZTUNNEL, c);
    const cfg = loadConfig(env);
    expect(cfg.nodeName).toBe(SAMPLE_NODE);
    expect(cfg.localXdsPath).toBeUndefined();
    expect(cfg.caRootGenerate).toBe(false); // every node must share the mounted root
    // main.ts refuses to start without CA_ROOT_DIR; it must be the Secret's mount.
    expect(cfg.caRootDir).toBeDefined();
    const mount = (c.volumeMounts ?? []).find((m) => m.mountPath === cfg.caRootDir);
    expect(mount?.readOnly).toBe(true);
    const vol = ZTUNNEL.spec.template.spec.volumes?.find((v) => v.name === mount?.name);
    expect(vol?.secret?.secretName).toBe("ambient-mesh-root");
    expect(vol?.secret?.items?.map((i) => [i.key, i.path]).sort()).toEqual([
      [ROOT_KEY_FILE, ROOT_KEY_FILE],
      [ROOT_CERT_FILE, ROOT_CERT_FILE],
    ].sort());
    const main = readFileSync(join(ROOT, "src/ztunnel/main.ts"), "utf8");
    expect(main).toMatch(/ConfigError\("CA_ROOT_DIR", "is required/);
  });

  it("mesh settings come from the ConfigMap and are valid values", () => {
    const cm = find("ConfigMap", "ambient-mesh") as { data: Record<string, string> };
    const env = resolveEnv(ZTUNNEL, only(ZTUNNEL));
    expect(loadConfig(env)).toMatchObject({ trustDomain: cm.data["trust-domain"], clusterId: cm.data["cluster-id"] });
    // pino throws at start-up on an unknown level.
    expect(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).toContain(cm.data["log-level"]);
    for (const d of [AGENT, ZTUNNEL]) expect(resolveEnv(d, only(d)).LOG_LEVEL).toBe(cm.data["log-level"]);
  });

  it("terminationGracePeriodSeconds leaves room after ztunnel's CONNECTION_TERMINATION_DEADLINE", () => {
    const deadlineMs = loadConfig(resolveEnv(ZTUNNEL, only(ZTUNNEL))).connectionTerminationDeadlineMs;
    expect(deadlineMs).toBe(parseDuration("20s"));
    const grace = ZTUNNEL.spec.template.spec.terminationGracePeriodSeconds!;
    // Drain for the deadline, then stop workers and servers: at least 5 s of margin.
    expect(grace * 1000).toBeGreaterThanOrEqual(deadlineMs + 5000);
  });

  it("readiness probes hit the endpoints and ports the binaries serve", () => {
    const agentCfg = loadAgentConfig(resolveEnv(AGENT, only(AGENT)));
    expect(only(AGENT).readinessProbe?.httpGet).toEqual({ path: "/readyz", port: agentCfg.httpPort });
    const z = loadConfig(resolveEnv(ZTUNNEL, only(ZTUNNEL)));
    expect(only(ZTUNNEL).readinessProbe?.httpGet).toEqual({ path: "/healthz/ready", port: z.readinessAddr.port });
    expect(z.readinessAddr.host).toBe("0.0.0.0"); // kubelet probes the pod IP
    expect(readFileSync(join(ROOT, "src/ztunnel/admin/server.ts"), "utf8")).toContain('"/healthz/ready"');
    expect(readFileSync(join(ROOT, "src/agent/health/server.ts"), "utf8")).toContain('"/readyz"');
  });
});

describe("deploy/ manifests: host paths are the code's defaults", () => {
  const agent = only(AGENT);
  const agentEnv = resolveEnv(AGENT, agent);
  const cfg = loadAgentConfig(agentEnv);
  const defaults = loadAgentConfig({ NODE_NAME: SAMPLE_NODE });
  const z = only(ZTUNNEL);
  const zcfg = loadConfig(resolveEnv(ZTUNNEL, z));

  it("the agent's directories are the defaults, on the host paths the defaults stand for", () => {
    expect(cfg.runDir).toBe(defaults.runDir);
    expect(cfg.cniNetDir).toBe(defaults.cniNetDir);
    expect(cfg.cniBinDir).toBe(defaults.cniBinDir);
    expect(cfg.zdsSocket).toBe(defaults.zdsSocket);
    // /host/<p> inside the container is <p> on the node.
    expect(hostPathOf(AGENT, agent, cfg.cniNetDir)?.host).toBe(relative("/host", cfg.cniNetDir).replace(/^/, "/"));
    expect(hostPathOf(AGENT, agent, cfg.cniBinDir)?.host).toBe(relative("/host", cfg.cniBinDir).replace(/^/, "/"));
    expect(hostPathOf(AGENT, agent, cfg.cniBinDir)?.host).toBe("/opt/cni/bin");
    expect(hostPathOf(AGENT, agent, cfg.cniNetDir)?.host).toBe("/etc/cni/net.d");
  });

  it("the run dir is the same path on the host: the plugin reads what the agent writes there", () => {
    expect(cfg.runDir).toBe(DEFAULT_RUN_DIR);
    expect(hostPathOf(AGENT, agent, cfg.runDir)?.host).toBe(cfg.runDir);
  });

  it("the agent and ztunnel meet at the same host socket, the default one", () => {
    expect(zcfg.inpodUds).toBe(loadConfig({}).inpodUds);
    const a = hostPathOf(AGENT, agent, cfg.zdsSocket);
    const b = hostPathOf(ZTUNNEL, z, zcfg.inpodUds);
    expect(a?.host).toBe(cfg.zdsSocket);
    expect(b?.host).toBe(a?.host);
  });

  it("the host's /proc is scanned read-only through PROC_ROOT", () => {
    expect(defaults.procRoot).toBe("/proc");
    expect(cfg.procRoot).toBe("/host/proc");
    const hp = hostPathOf(AGENT, agent, cfg.procRoot);
    expect(hp?.host).toBe("/proc");
    expect(hp?.mount.readOnly).toBe(true);
  });

  it("pod netns paths from CNI events resolve inside the container, with mounts propagated", () => {
    const hp = hostPathOf(AGENT, agent, "/var/run/netns/cni-1234");
    expect(hp?.host).toBe("/var/run/netns/cni-1234");
    expect(hp?.mount.mountPropagation).toBe("HostToContainer");
  });

  it("no host path is mounted without a reason", () => {
    const explained = new Map<string, string>([
      ["/opt/cni/bin", "MOUNTED_CNI_BIN_DIR"],
      ["/etc/cni/net.d", "MOUNTED_CNI_NET_DIR"],
      [cfg.runDir, "CNI_AGENT_RUN_DIR"],
      [posix.dirname(cfg.zdsSocket), "ZTUNNEL_UDS_ADDRESS"],
      ["/var/run/netns", "CNI ADD netns paths"],
      ["/proc", "PROC_ROOT"],
      ["/run/xtables.lock", "iptables' lock, shared with kube-proxy"],
    ]);
    const agentHost = (AGENT.spec.template.spec.volumes ?? []).flatMap((v) => (v.hostPath ? [v.hostPath.path] : []));
    expect(agentHost.sort()).toEqual([...explained.keys()].sort());
    const zHost = (ZTUNNEL.spec.template.spec.volumes ?? []).flatMap((v) => (v.hostPath ? [v.hostPath.path] : []));
    expect(zHost).toEqual([posix.dirname(zcfg.inpodUds)]);
  });
});

describe("deploy/ manifests: node placement and privileges", () => {
  it("both DaemonSets run on every node, as node-critical, rolling, with requests and limits", () => {
    for (const d of [AGENT, ZTUNNEL]) {
      const spec = d.spec.template.spec;
      expect(spec.priorityClassName).toBe("system-node-critical");
      expect(spec.tolerations).toContainEqual({ operator: "Exists" });
      expect(d.spec.updateStrategy?.type).toBe("RollingUpdate");
      const r = only(d).resources;
      for (const k of ["cpu", "memory"]) {
        expect(r?.requests?.[k]).toBeDefined();
        expect(r?.limits?.[k]).toBeDefined();
      }
      // Never enrolled in the mesh they implement.
      expect(d.spec.template.metadata.labels["istio.io/dataplane-mode"]).toBe("none");
    }
    expect(AGENT.spec.template.spec.hostNetwork).toBe(true);
    expect(ZTUNNEL.spec.template.spec.hostNetwork).toBeUndefined();
  });

  it("capabilities: exactly what each binary needs, nothing privileged", () => {
    const caps = (d: DaemonSetObj): { add: string[]; drop: string[]; privileged: boolean | undefined } => {
      const sc = only(d).securityContext;
      return { add: [...(sc?.capabilities?.add ?? [])].sort(), drop: sc?.capabilities?.drop ?? [], privileged: sc?.privileged };
    };
    expect(caps(AGENT)).toEqual({ add: ["DAC_OVERRIDE", "NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"], drop: ["ALL"], privileged: false });
    expect(caps(ZTUNNEL)).toEqual({ add: ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"], drop: ["ALL"], privileged: false });
  });

  it("each DaemonSet's service account is the subject of its ClusterRoleBinding", () => {
    for (const [d, binding, role] of [
      [AGENT, "ambient-istio-cni", "ambient-istio-cni"],
      [ZTUNNEL, "ambient-ztunnel", "ambient-ztunnel"],
    ] as const) {
      const sa = d.spec.template.spec.serviceAccountName!;
      expect(find("ServiceAccount", sa)).toMatchObject({ metadata: { namespace: d.metadata.namespace } });
      expect(find("ClusterRoleBinding", binding)).toMatchObject({
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
        subjects: [{ kind: "ServiceAccount", name: sa, namespace: d.metadata.namespace }],
      });
      find("ClusterRole", role);
    }
  });
});

describe("deploy/uninstall: the node cleanup DaemonSet", () => {
  const cleanup = UNINSTALL_DOCS.find((d) => d.obj.kind === "DaemonSet")!.obj as unknown as DaemonSetObj;
  const c = only(cleanup);

  it("runs the cleanup script the image holds, from the repository's deploy/uninstall", () => {
    const argv = [...(c.command ?? []), ...(c.args ?? [])].join(" ");
    const script = /\bnode\s+(\S+)/.exec(argv)?.[1];
    expect(script).toBeDefined();
    const inRepo = repoPathOfImagePath(script!);
    expect(inRepo).toBe("deploy/uninstall/cni-cleanup.mjs");
    expect(existsSync(join(ROOT, inRepo!))).toBe(true);
    // Its imports resolve against the image's dist/ exactly as against the repository's.
    const text = readFileSync(join(ROOT, inRepo!), "utf8");
    for (const m of text.matchAll(/from "(\.\.\/[^"]+)"/g)) {
      const target = posix.join(posix.dirname(inRepo!), m[1]!);
      expect(target.startsWith("dist/src/"), target).toBe(true);
      expect(existsSync(join(ROOT, target.replace(/^dist\//, "").replace(/\.js$/, ".ts"))), target).toBe(true);
      expect(repoPathOfImagePath(posix.join("/app", target))).toBe(target);
    }
  });

  it("uses the agent's variable names and the agent's host paths, with the agent's values", () => {
    const env = resolveEnv(cleanup, c);
    expect(Object.keys(env).filter((n) => !AGENT_READS.has(n))).toEqual([]);
    const agentEnv = resolveEnv(AGENT, only(AGENT));
    for (const [k, v] of Object.entries(env)) expect(v, k).toBe(agentEnv[k]);
    for (const m of c.volumeMounts ?? []) {
      const mine = hostPathOf(cleanup, c, m.mountPath)?.host;
      expect(mine, m.mountPath).toBe(hostPathOf(AGENT, only(AGENT), m.mountPath)?.host);
    }
    expect(cleanup.spec.template.spec.hostNetwork).toBe(true); // the probe SNAT lives in the node netns
    expect(cleanup.metadata.namespace).toBe(AGENT.metadata.namespace);
  });
});
