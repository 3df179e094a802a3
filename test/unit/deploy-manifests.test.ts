import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { ztunnelShebang } from "../../src/ztunnel/node-flags.js";
import { validateDoc } from "../fixtures/k8s-schema.js";
import { DEPLOY, entryPoints, kindOf, nameOf, only, OVERLAYS, render, Rendered, repoPathOfImagePath, ROOT, type DaemonSetObj, type Obj } from "../fixtures/deploy-render.js";

// deploy/ as a user installs it: each overlay rendered offline by `kubectl kustomize`; every
// object validates against the Kubernetes schemas (and has no field the API server would
// silently drop), the overlays differ exactly where they must (namespace, names, host paths),
// commands run the image's entry points, privileges are exactly what each binary needs.
// Environment and host paths: deploy-env.test.ts.

const R = Object.fromEntries(OVERLAYS.map((o) => [o, new Rendered(o, render(`overlays/${o}`))])) as Record<(typeof OVERLAYS)[number], Rendered>;
const UNINSTALL = Object.fromEntries(OVERLAYS.map((o) => [o, render(`overlays/${o}/uninstall`)])) as Record<(typeof OVERLAYS)[number], Obj[]>;

/** Names a user sees per overlay: [kind, name, namespace or "" for cluster-scoped]. */
const NAMES = {
  istio: [
    ["Namespace", "istio-system", ""],
    ["ConfigMap", "ambient-mesh", "istio-system"],
    ["ServiceAccount", "istio-cni", "istio-system"],
    ["ServiceAccount", "ztunnel", "istio-system"],
    // ztunnel in istiod mode calls no Kubernetes API: no ClusterRole, as in Istio's chart.
    ["ClusterRole", "ambient-istio-cni", ""],
    ["ClusterRoleBinding", "ambient-istio-cni", ""],
    ["DaemonSet", "istio-cni-node", "istio-system"],
    ["DaemonSet", "ztunnel", "istio-system"],
  ],
  standalone: [
    ["Namespace", "ambient-system", ""],
    ["ConfigMap", "ambient-mesh", "ambient-system"],
    ["ServiceAccount", "ambient-cni-node", "ambient-system"],
    ["ServiceAccount", "ambient-ztunnel", "ambient-system"],
    ["ClusterRole", "ambient-cni-node", ""],
    ["ClusterRole", "ambient-ztunnel", ""],
    ["ClusterRoleBinding", "ambient-cni-node", ""],
    ["ClusterRoleBinding", "ambient-ztunnel", ""],
    ["DaemonSet", "ambient-cni-node", "ambient-system"],
    ["DaemonSet", "ambient-ztunnel", "ambient-system"],
  ],
} as const;

const identity = (o: Obj): string[] => [String(o.kind), nameOf(o), String((o.metadata as Obj).namespace ?? "")];

describe("deploy/: kustomize layout", () => {
  it("the base lists every manifest file of deploy/base exactly once, has no namespace, and names the image once", () => {
    const k = parseAllDocuments(readFileSync(join(DEPLOY, "base", "kustomization.yaml"), "utf8"))[0]!.toJS() as { resources: string[]; namespace?: string; images?: { name: string }[] };
    const files = readdirSync(join(DEPLOY, "base")).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml").sort();
    expect([...k.resources].sort()).toEqual(files);
    expect(new Set(k.resources).size).toBe(k.resources.length);
    expect(k.namespace).toBeUndefined();
    for (const f of files) expect(readFileSync(join(DEPLOY, "base", f), "utf8"), f).not.toMatch(/^\s*namespace:/m);
    const images = new Set([R.istio.agent, R.istio.ztunnel].map((d) => only(d).image));
    expect(images.size).toBe(1);
    expect(k.images?.map((i) => i.name)).toEqual([...images].map((i) => String(i).split(":")[0]));
  });

  it.each(OVERLAYS)("%s renders exactly its own names, every namespaced object in its one namespace", (o) => {
    expect(R[o].docs.map(identity).sort()).toEqual(NAMES[o].map((n) => [...n]).sort());
    expect(UNINSTALL[o].map(identity)).toEqual([["DaemonSet", "ambient-node-cleanup", NAMES[o][0][1]]]);
  });

  it("standalone and istio share no cluster-scoped name and no namespace: both can be rendered into one cluster", () => {
    const names = (o: (typeof OVERLAYS)[number]): Set<string> => new Set(R[o].docs.filter((d) => (d.metadata as Obj).namespace === undefined).map((d) => `${String(d.kind)}/${nameOf(d)}`));
    expect([...names("standalone")].filter((n) => names("istio").has(n))).toEqual([]);
  });
});

describe.each(OVERLAYS)("deploy/overlays/%s: schemas", (o) => {
  const r = R[o];

  it("every object (and the uninstall DaemonSet) validates against the Kubernetes schemas and has no unknown field", () => {
    for (const d of [...r.docs, ...UNINSTALL[o]]) expect(validateDoc(d), `${kindOf(d)} ${nameOf(d)}`).toEqual([]);
  });

  it("the checks catch a broken manifest (wrong type, missing selector, misspelled field)", () => {
    const broken = structuredClone(r.agent) as unknown as { spec: Record<string, unknown> & DaemonSetObj["spec"] };
    (broken.spec.template.spec.containers[0] as unknown as Record<string, unknown>).image = 42;
    expect(validateDoc(broken as unknown as Obj).join()).toMatch(/image must be string/);
    const noSelector = structuredClone(r.agent) as unknown as { spec: Record<string, unknown> };
    delete noSelector.spec.selector;
    expect(validateDoc(noSelector as unknown as Obj).join()).toMatch(/selector/);
    const typo = structuredClone(r.agent);
    (typo.spec.template.spec.containers[0]!.volumeMounts![3] as unknown as Record<string, unknown>).mountPropogation = "HostToContainer";
    expect(validateDoc(typo as unknown as Obj)).toEqual([".spec.template.spec.containers[0].volumeMounts[3].mountPropogation"].map((f) => `unknown field ${f}`));
  });

  it("rules the API server enforces beyond the schema hold", () => {
    for (const d of [r.agent, r.ztunnel]) {
      const spec = d.spec.template.spec;
      // selector ⊆ template labels, else the API rejects the DaemonSet
      for (const [k, v] of Object.entries(d.spec.selector.matchLabels)) expect(d.spec.template.metadata.labels[k]).toBe(v);
      const c = only(d);
      const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
      expect(volumes.size).toBe((spec.volumes ?? []).length);
      for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name), `${d.metadata.name}: mount ${m.name} has no volume`).toBe(true);
      const paths = (c.volumeMounts ?? []).map((m) => m.mountPath);
      expect(new Set(paths).size, "two mounts on one path").toBe(paths.length);
      // allowPrivilegeEscalation=false is refused together with SYS_ADMIN
      if (c.securityContext?.capabilities?.add?.includes("SYS_ADMIN")) expect(c.securityContext.allowPrivilegeEscalation).not.toBe(false);
      // hostNetwork: a declared hostPort must equal the containerPort
      if (spec.hostNetwork) for (const p of c.ports ?? []) if (p.hostPort !== undefined) expect(p.hostPort).toBe(p.containerPort);
      // every namespaced object lives in the one namespace the overlay creates
      expect(d.metadata.namespace).toBe(nameOf(r.find("Namespace", d.metadata.namespace)));
    }
  });
});

describe.each(OVERLAYS)("deploy/overlays/%s: commands run the image's entry points", (o) => {
  const r = R[o];
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin?: Record<string, string> };
  const tsconfig = JSON.parse(readFileSync(join(ROOT, "tsconfig.json"), "utf8")) as { compilerOptions: { outDir: string; rootDir: string } };

  // ztunnel's shebang also gives node ztunnel's flags (src/ztunnel/node-flags.ts).
  it.each([
    ["agent", "src/agent/main.ts", "cni-agent", "#!/usr/bin/env node"],
    ["ztunnel", "src/ztunnel/main.ts", "ztunnel", ztunnelShebang()],
  ] as const)("the %s runs the image's entry point for the compiled %s (the package's %s bin)", (which, source, bin, shebang) => {
    const c = only(r[which]);
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    expect(argv).toEqual([`/usr/local/bin/${bin}`]);
    // The entry point is a link the runtime stage makes to a file it copies from the build...
    expect(entryPoints().has(argv[0]!), `${argv[0]} is not an entry point of the image`).toBe(true);
    const built = repoPathOfImagePath(argv[0]!);
    // ...which tsc produces from this source (outDir/rootDir mirror the tree).
    expect(tsconfig.compilerOptions).toMatchObject({ outDir: "dist", rootDir: "." });
    expect(built).toBe(posix.join("dist", source.replace(/\.ts$/, ".js")));
    expect(pkg.bin?.[bin]).toBe(built);
    expect(readFileSync(join(ROOT, source), "utf8").split("\n")[0]).toBe(shebang);
    // After `npm run build` (npm test builds first) the compiled entry is really there.
    if (existsSync(join(ROOT, "dist", "src"))) expect(existsSync(join(ROOT, built!))).toBe(true);
  });

  it("the uninstall DaemonSet runs the image's cleanup entry point, whose imports resolve in the image", () => {
    const cleanup = UNINSTALL[o][0] as unknown as DaemonSetObj;
    const argv = [...(only(cleanup).command ?? []), ...(only(cleanup).args ?? [])].join(" ");
    const exe = /(\/usr\/local\/bin\/[\w-]+)/.exec(argv)?.[1];
    expect(exe).toBe("/usr/local/bin/ambient-cni-cleanup");
    const inRepo = repoPathOfImagePath(exe!);
    expect(inRepo).toBe("deploy/uninstall/cni-cleanup.mjs");
    const text = readFileSync(join(ROOT, inRepo!), "utf8");
    const imports = [...text.matchAll(/from "(\.\.\/[^"]+)"/g)];
    // The script imports the agent's own code; none found means the pattern no longer sees them.
    expect(imports.length).toBeGreaterThan(0);
    for (const m of imports) {
      const target = posix.join(posix.dirname(inRepo!), m[1]!);
      expect(target.startsWith("dist/src/"), target).toBe(true);
      expect(existsSync(join(ROOT, target.replace(/^dist\//, "").replace(/\.js$/, ".ts"))), target).toBe(true);
      expect(repoPathOfImagePath(posix.join("/app", target))).toBe(target);
    }
  });
});

describe.each(OVERLAYS)("deploy/overlays/%s: node placement and privileges", (o) => {
  const r = R[o];

  it("both DaemonSets run on every node, as node-critical, rolling, with requests and limits", () => {
    for (const d of [r.agent, r.ztunnel]) {
      const spec = d.spec.template.spec;
      expect(spec.priorityClassName).toBe("system-node-critical");
      expect(spec.tolerations).toContainEqual({ operator: "Exists" });
      expect(d.spec.updateStrategy?.type).toBe("RollingUpdate");
      const res = only(d).resources;
      for (const k of ["cpu", "memory"]) {
        expect(res?.requests?.[k]).toBeDefined();
        expect(res?.limits?.[k]).toBeDefined();
      }
      // Never enrolled in the mesh they implement.
      expect(d.spec.template.metadata.labels["istio.io/dataplane-mode"]).toBe("none");
    }
    expect(r.agent.spec.template.spec.hostNetwork).toBe(true);
    expect(r.ztunnel.spec.template.spec.hostNetwork).toBeUndefined();
  });

  it("capabilities: exactly what each binary needs, nothing privileged; root only where the image's non-root default cannot work", () => {
    const caps = (d: DaemonSetObj): { add: string[]; drop: string[]; privileged: boolean | undefined; uid: number | undefined } => {
      const sc = only(d).securityContext;
      return { add: [...(sc?.capabilities?.add ?? [])].sort(), drop: sc?.capabilities?.drop ?? [], privileged: sc?.privileged, uid: sc?.runAsUser };
    };
    expect(caps(r.agent)).toEqual({ add: ["DAC_OVERRIDE", "NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"], drop: ["ALL"], privileged: false, uid: 0 });
    expect(caps(r.ztunnel)).toEqual({ add: ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"], drop: ["ALL"], privileged: false, uid: 0 });
    // The image itself defaults to a non-root user (scripts/image-smoke.sh checks it for real).
    expect(readFileSync(join(DEPLOY, "Containerfile"), "utf8")).toMatch(/^USER 65532:65532$/m);
  });

  it("each DaemonSet's service account is the subject of its ClusterRoleBinding (istio: ztunnel has none, it reads no API)", () => {
    if (o === "istio") {
      const sa = r.ztunnel.spec.template.spec.serviceAccountName!;
      expect(r.find("ServiceAccount", sa)).toMatchObject({ metadata: { namespace: r.ztunnel.metadata.namespace } });
      expect(r.docs.filter((x) => x.kind === "ClusterRoleBinding" && (x.subjects as { name: string }[]).some((s) => s.name === sa))).toEqual([]);
      expect(r.ztunnel.spec.template.spec.automountServiceAccountToken).toBe(false);
    }
    for (const d of o === "istio" ? [r.agent] : [r.agent, r.ztunnel]) {
      const sa = d.spec.template.spec.serviceAccountName!;
      expect(r.find("ServiceAccount", sa)).toMatchObject({ metadata: { namespace: d.metadata.namespace } });
      const bindings = r.docs.filter((x) => x.kind === "ClusterRoleBinding" && (x.subjects as { name: string }[]).some((s) => s.name === sa));
      expect(bindings).toHaveLength(1);
      const b = bindings[0] as { roleRef: { apiGroup: string; kind: string; name: string }; subjects: unknown[] };
      expect(b).toMatchObject({ roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole" }, subjects: [{ kind: "ServiceAccount", name: sa, namespace: d.metadata.namespace }] });
      r.find("ClusterRole", b.roleRef.name);
    }
  });

  it("ztunnel has Istio's ztunnel chart names, so istioctl finds it (istio); its own names (standalone)", () => {
    const z = r.ztunnel;
    expect(z.spec.selector.matchLabels).toEqual({ app: "ztunnel" });
    expect(z.spec.template.metadata.labels.app).toBe("ztunnel");
    if (o === "istio") {
      expect([z.metadata.name, z.metadata.namespace, z.spec.template.spec.serviceAccountName]).toEqual(["ztunnel", "istio-system", "ztunnel"]);
      expect((z as unknown as { metadata: { labels: Record<string, string> } }).metadata.labels.app).toBe("ztunnel");
    } else {
      expect([z.metadata.name, z.metadata.namespace, z.spec.template.spec.serviceAccountName]).toEqual(["ambient-ztunnel", "ambient-system", "ambient-ztunnel"]);
    }
  });
});
