import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join, posix, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULT_RUN_DIR } from "../../cni-plugin/config.js";
import { loadAgentConfig } from "../../src/agent/config.js";
import { istiodReason } from "../../src/ztunnel/cluster/select.js";
import { ENV_NAMES, loadConfig, parseDuration } from "../../src/ztunnel/config.js";
import { DEFAULT_ROOT_CA, DEFAULT_TOKEN_PATH, DEFAULT_XDS_ADDRESS, loadIstiodConfig, nodeId } from "../../src/ztunnel/xds/config.js";
import { ROOT_CERT_FILE, ROOT_KEY_FILE } from "../../src/ztunnel/tls/ca.js";
import { AGENT_READS, envReadBy, ZTUNNEL_READS } from "../fixtures/deploy-env-reads.js";
import { hostPathOf, only, OVERLAYS, render, Rendered, resolveEnv, ROOT, SAMPLE_NODE, SAMPLE_POD, SAMPLE_POD_IP, volumeAt, type DaemonSetObj } from "../fixtures/deploy-render.js";

// The rendered overlays against the binaries' own configuration: env names are exactly those
// the binaries read and load into a valid config, host paths are where the code looks (Istio's
// defaults in the istio overlay, our own in standalone), and the agent, ztunnel, the plugin and
// the uninstall DaemonSet meet on the same host paths.

const R = Object.fromEntries(OVERLAYS.map((o) => [o, new Rendered(o, render(`overlays/${o}`))])) as Record<(typeof OVERLAYS)[number], Rendered>;
const CLEANUP = Object.fromEntries(OVERLAYS.map((o) => [o, render(`overlays/${o}/uninstall`)[0] as unknown as DaemonSetObj])) as Record<(typeof OVERLAYS)[number], DaemonSetObj>;

/** The variable names a compiled entry point's `--help` lists (`npm test` builds dist/ first). */
function helpVariables(main: string): Set<string> {
  const path = join(ROOT, main);
  if (!existsSync(path)) throw new Error(`${main} is missing: run npm run build first`);
  const text = execFileSync(process.execPath, [path, "--help"], { encoding: "utf8", env: { PATH: process.env.PATH ?? "" } });
  const names = new Set([...text.matchAll(/^ {2}([A-Z][A-Z0-9_]+)\b/gm)].map((m) => m[1]!));
  // "Also read: LOG_LEVEL, …": variables read outside the configuration schema.
  for (const m of text.matchAll(/^Also read: (.+)$/gm)) for (const n of m[1]!.split(/[,.\s]+/)) if (/^[A-Z][A-Z0-9_]+$/.test(n)) names.add(n);
  return names;
}

describe("reading the code finds the variables (sanity: the extraction itself works)", () => {
  it("finds known names in both binaries and not the other's", () => {
    for (const n of ["NODE_NAME", "POD_NAMESPACE", "CNI_AGENT_RUN_DIR", "PROC_ROOT", "LOG_LEVEL", "KUBERNETES_SERVICE_HOST"]) expect(AGENT_READS).toContain(n);
    for (const n of ["NODE_NAME", "CA_ROOT_DIR", "INPOD_UDS", "TRUST_DOMAIN", "LOG_LEVEL", "ZTUNNEL_DEBUG_ENDPOINTS", "XDS_ADDRESS", "POD_NAME", "POD_NAMESPACE", "INSTANCE_IP"]) expect(ZTUNNEL_READS).toContain(n);
    // The exported list is found by reading the source, too.
    const fromSource = envReadBy("src/ztunnel/main.ts", []);
    for (const n of ENV_NAMES) expect(fromSource).toContain(n);
    expect(AGENT_READS).not.toContain("CA_ROOT_DIR");
    expect(ZTUNNEL_READS).not.toContain("CNI_AGENT_RUN_DIR");
  });
});

describe.each(OVERLAYS)("deploy/overlays/%s: environment", (o) => {
  const r = R[o];
  const [AGENT, ZTUNNEL] = [r.agent, r.ztunnel];

  it.each([
    ["agent", AGENT_READS],
    ["ztunnel", ZTUNNEL_READS],
  ] as const)("the %s sets only variables its binary reads, each once", (which, reads) => {
    const names = (only(r[which]).env ?? []).map((e) => e.name);
    expect(names.filter((n) => !reads.has(n))).toEqual([]);
    expect(new Set(names).size).toBe(names.length);
  });

  it.each([
    ["agent", "dist/src/agent/main.js"],
    ["ztunnel", "dist/src/ztunnel/main.js"],
  ] as const)("every variable the %s's manifest sets is one its binary's own --help lists", (which, main) => {
    const help = helpVariables(main);
    expect(help.size, `${main} --help lists no variables`).toBeGreaterThan(5);
    const names = (only(r[which]).env ?? []).map((e) => e.name);
    expect(names.filter((n) => !help.has(n))).toEqual([]);
  });

  it("the agent's env loads, with the node name and namespace from the downward API", () => {
    const env = resolveEnv(r, AGENT, only(AGENT));
    const cfg = loadAgentConfig(env);
    expect(cfg).toMatchObject({ nodeName: SAMPLE_NODE, podNamespace: AGENT.metadata.namespace, inventoryPath: undefined, kubeconfig: undefined });
    const byName = new Map((only(AGENT).env ?? []).map((e) => [e.name, e]));
    expect(byName.get("NODE_NAME")?.valueFrom?.fieldRef?.fieldPath).toBe("spec.nodeName");
    expect(byName.get("POD_NAMESPACE")?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.namespace");
    // NODE_NAME is required in Kubernetes mode: without it the agent refuses to start.
    const { NODE_NAME: _, ...withoutNode } = env;
    expect(() => loadAgentConfig(withoutNode)).toThrow(/NODE_NAME is required/);
  });

  // standalone: ztunnel signs with the mesh root every node shares (Secret ambient-mesh-root).
  if (o === "standalone") {
    it("ztunnel's env loads, names its node, and points CA_ROOT_DIR at the mounted mesh root", () => {
      const c = only(ZTUNNEL);
      const cfg = loadConfig(resolveEnv(r, ZTUNNEL, c));
      expect(cfg.nodeName).toBe(SAMPLE_NODE);
      expect(cfg.localXdsPath).toBeUndefined();
      expect(cfg.caRootGenerate).toBe(false); // every node must share the mounted root
      expect(cfg.caRootDir).toBeDefined();
      const mount = (c.volumeMounts ?? []).find((m) => m.mountPath === cfg.caRootDir);
      expect(mount?.readOnly).toBe(true);
      const vol = ZTUNNEL.spec.template.spec.volumes?.find((v) => v.name === mount?.name);
      expect(vol?.secret?.secretName).toBe("ambient-mesh-root");
      expect(vol?.secret?.items?.map((i) => [i.key, i.path]).sort()).toEqual([
        [ROOT_KEY_FILE, ROOT_KEY_FILE],
        [ROOT_CERT_FILE, ROOT_CERT_FILE],
      ].sort());
      expect(readFileSync(join(ROOT, "src/ztunnel/main.ts"), "utf8")).toMatch(/ConfigError\("CA_ROOT_DIR", "is required/);
      // Not istiod mode: nothing selects it (no XDS_ADDRESS, no istio-ca token mounted).
      expect((c.env ?? []).map((e) => e.name)).not.toContain("XDS_ADDRESS");
      expect(volumeAt(ZTUNNEL, c, DEFAULT_TOKEN_PATH)).toBeUndefined();
    });
  }

  // istio: istiod mode (src/ztunnel/xds/README.md), as Istio's ztunnel chart runs it.
  if (o === "istio") {
    const c = only(ZTUNNEL);
    const env = resolveEnv(r, ZTUNNEL, c);
    const cfg = loadConfig(env);

    it("ztunnel runs in istiod mode: XDS_ADDRESS is istiod's, no local state source, no CA_ROOT_DIR and no mesh-root Secret", () => {
      expect(env.XDS_ADDRESS).toBe(DEFAULT_XDS_ADDRESS);
      expect(istiodReason(cfg, env)).toBe(`no LOCAL_XDS_PATH; XDS_ADDRESS=${DEFAULT_XDS_ADDRESS}`);
      expect(cfg.localXdsPath).toBeUndefined();
      expect(cfg.caRootDir).toBeUndefined();
      expect(cfg.caRootGenerate).toBe(false);
      expect(Object.keys(env)).not.toContain("CA_ROOT_DIR");
      expect((ZTUNNEL.spec.template.spec.volumes ?? []).filter((v) => v.secret !== undefined)).toEqual([]);
      // main.ts asks for a local root only outside istiod mode.
      expect(readFileSync(join(ROOT, "src/ztunnel/main.ts"), "utf8")).toMatch(/if \(!istiod && config\.caRootDir === undefined\)/);
      // It never calls the Kubernetes API: no API token is mounted.
      expect(ZTUNNEL.spec.template.spec.automountServiceAccountToken).toBe(false);
    });

    it("the xDS node id comes from the downward API: POD_NAME, POD_NAMESPACE, INSTANCE_IP (and NODE_NAME)", () => {
      const byName = new Map((c.env ?? []).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
      expect(Object.fromEntries(["POD_NAME", "POD_NAMESPACE", "INSTANCE_IP", "NODE_NAME"].map((n) => [n, byName.get(n)]))).toEqual({
        POD_NAME: "metadata.name",
        POD_NAMESPACE: "metadata.namespace",
        INSTANCE_IP: "status.podIP",
        NODE_NAME: "spec.nodeName",
      });
      const ic = loadIstiodConfig(env, cfg);
      expect(ic).toMatchObject({ podName: SAMPLE_POD, podNamespace: "istio-system", instanceIp: SAMPLE_POD_IP, nodeName: SAMPLE_NODE, clusterId: "Kubernetes", trustDomain: "cluster.local" });
      expect(nodeId(ic)).toBe(`ztunnel~${SAMPLE_POD_IP}~${SAMPLE_POD}.istio-system~istio-system.svc.cluster.local`);
      // Without any of the three, istiod mode refuses to start and names the variable.
      for (const n of ["POD_NAME", "POD_NAMESPACE", "INSTANCE_IP"]) {
        const { [n]: _, ...without } = env;
        expect(() => loadIstiodConfig(without, cfg)).toThrow(new RegExp(`${n}: is required with istiod`));
      }
    });

    it("the token istiod checks is a projected service account token, audience istio-ca, at the path ztunnel reads", () => {
      const ic = loadIstiodConfig(env, cfg);
      expect(ic.tokenPath).toBe(DEFAULT_TOKEN_PATH);
      expect(DEFAULT_TOKEN_PATH).toBe("/var/run/secrets/tokens/istio-token");
      const at = volumeAt(ZTUNNEL, c, ic.tokenPath);
      expect(at?.mount.readOnly).toBe(true);
      const sources = at?.volume.projected?.sources ?? [];
      expect(sources).toHaveLength(1);
      expect(sources[0]?.serviceAccountToken).toMatchObject({ audience: "istio-ca", path: at?.rest });
      // The kubelet rotates it; ztunnel re-reads the file (xds/credentials.ts).
      expect(sources[0]?.serviceAccountToken?.expirationSeconds).toBeGreaterThanOrEqual(600);
    });

    it("istiod's root comes from the istio-ca-root-cert ConfigMap (root-cert.pem), for both xDS and the CA", () => {
      const ic = loadIstiodConfig(env, cfg);
      expect(ic.xds.rootCaPath).toBe(DEFAULT_ROOT_CA);
      expect(ic.ca.rootCaPath).toBe(DEFAULT_ROOT_CA);
      expect(ic.ca.url).toBe(ic.xds.url);
      const at = volumeAt(ZTUNNEL, c, ic.xds.rootCaPath);
      expect(at?.mount.mountPath).toBe("/var/run/secrets/istio");
      expect(at?.mount.readOnly).toBe(true);
      // No items: every key is a file named after it, and istiod publishes the key root-cert.pem.
      expect(at?.volume.configMap).toEqual({ name: "istio-ca-root-cert" });
      expect(at?.rest).toBe("root-cert.pem");
    });

    it("it runs as service account ztunnel in istio-system: the account istiod's CA lets impersonate pods on its node", () => {
      expect(ZTUNNEL.metadata.namespace).toBe("istio-system");
      expect(ZTUNNEL.spec.template.spec.serviceAccountName).toBe("ztunnel");
      expect(r.find("ServiceAccount", "ztunnel")).toMatchObject({ metadata: { namespace: "istio-system" } });
    });
  }

  it("mesh settings come from the overlay's ConfigMap and are valid values", () => {
    const cm = r.find("ConfigMap", "ambient-mesh") as { data: Record<string, string> };
    expect(loadConfig(resolveEnv(r, ZTUNNEL, only(ZTUNNEL)))).toMatchObject({ trustDomain: cm.data["trust-domain"], clusterId: cm.data["cluster-id"] });
    // pino throws at start-up on an unknown level.
    expect(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).toContain(cm.data["log-level"]);
    for (const d of [AGENT, ZTUNNEL]) expect(resolveEnv(r, d, only(d)).LOG_LEVEL).toBe(cm.data["log-level"]);
  });

  it("terminationGracePeriodSeconds leaves room after ztunnel's CONNECTION_TERMINATION_DEADLINE", () => {
    const deadlineMs = loadConfig(resolveEnv(r, ZTUNNEL, only(ZTUNNEL))).connectionTerminationDeadlineMs;
    expect(deadlineMs).toBe(parseDuration("20s"));
    expect(ZTUNNEL.spec.template.spec.terminationGracePeriodSeconds! * 1000).toBeGreaterThanOrEqual(deadlineMs + 5000);
  });

  it("probes and the metrics annotation hit the endpoints and ports the binaries serve", () => {
    const agentCfg = loadAgentConfig(resolveEnv(r, AGENT, only(AGENT)));
    expect(only(AGENT).readinessProbe?.httpGet).toEqual({ path: "/readyz", port: agentCfg.httpPort });
    expect(only(AGENT).livenessProbe?.httpGet).toEqual({ path: "/healthz", port: agentCfg.httpPort });
    expect(only(AGENT).ports?.map((p) => p.containerPort)).toEqual([agentCfg.httpPort]);
    expect(AGENT.spec.template.metadata.annotations?.["prometheus.io/port"]).toBe(String(agentCfg.httpPort));
    const z = loadConfig(resolveEnv(r, ZTUNNEL, only(ZTUNNEL)));
    expect(only(ZTUNNEL).readinessProbe?.httpGet).toEqual({ path: "/healthz/ready", port: z.readinessAddr.port });
    expect(z.readinessAddr.host).toBe("0.0.0.0"); // kubelet probes the pod IP
    expect(readFileSync(join(ROOT, "src/ztunnel/admin/server.ts"), "utf8")).toContain('"/healthz/ready"');
    expect(readFileSync(join(ROOT, "src/agent/health/server.ts"), "utf8")).toContain('"/readyz"');
  });
});

describe.each(OVERLAYS)("deploy/overlays/%s: host paths", (o) => {
  const r = R[o];
  const [AGENT, ZTUNNEL] = [r.agent, r.ztunnel];
  const agent = only(AGENT);
  const cfg = loadAgentConfig(resolveEnv(r, AGENT, agent));
  const defaults = loadAgentConfig({ NODE_NAME: SAMPLE_NODE });
  const z = only(ZTUNNEL);
  const zcfg = loadConfig(resolveEnv(r, ZTUNNEL, z));

  it("istio: the code's defaults (Istio's paths and port); standalone: none of Istio's", () => {
    const istio = { runDir: defaults.runDir, zdsSocket: defaults.zdsSocket, inpodUds: loadConfig({}).inpodUds, port: defaults.httpPort };
    const mine = { runDir: cfg.runDir, zdsSocket: cfg.zdsSocket, inpodUds: zcfg.inpodUds, port: cfg.httpPort };
    expect(istio.runDir).toBe(DEFAULT_RUN_DIR);
    if (o === "istio") expect(mine).toEqual(istio);
    else for (const k of Object.keys(istio) as (keyof typeof istio)[]) expect(mine[k], k).not.toBe(istio[k]);
  });

  it("the CNI dirs are the node's, at /host/<path>", () => {
    expect(cfg.cniNetDir).toBe(defaults.cniNetDir);
    expect(cfg.cniBinDir).toBe(defaults.cniBinDir);
    expect(hostPathOf(AGENT, agent, cfg.cniNetDir)?.host).toBe(`/${relative("/host", cfg.cniNetDir)}`);
    expect(hostPathOf(AGENT, agent, cfg.cniBinDir)?.host).toBe("/opt/cni/bin");
    expect(hostPathOf(AGENT, agent, cfg.cniNetDir)?.host).toBe("/etc/cni/net.d");
  });

  it("the run dir is the same path on the host: the plugin reads what the agent writes there", () => {
    expect(hostPathOf(AGENT, agent, cfg.runDir)?.host).toBe(cfg.runDir);
  });

  it("the agent and ztunnel meet at the same host socket", () => {
    const a = hostPathOf(AGENT, agent, cfg.zdsSocket);
    const b = hostPathOf(ZTUNNEL, z, zcfg.inpodUds);
    expect(a?.host).toBe(cfg.zdsSocket);
    expect(b?.host).toBe(a?.host);
  });

  it("the host's /proc is scanned read-only through PROC_ROOT; pod netns paths resolve with mounts propagated", () => {
    expect(cfg.procRoot).toBe("/host/proc");
    const hp = hostPathOf(AGENT, agent, cfg.procRoot);
    expect(hp?.host).toBe("/proc");
    expect(hp?.mount.readOnly).toBe(true);
    const ns = hostPathOf(AGENT, agent, "/var/run/netns/cni-1234");
    expect(ns?.host).toBe("/var/run/netns/cni-1234");
    expect(ns?.mount.mountPropagation).toBe("HostToContainer");
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

  it("the uninstall DaemonSet uses the agent's variable names, values and host paths, in its namespace", () => {
    const cleanup = CLEANUP[o];
    const c = only(cleanup);
    const env = resolveEnv(r, cleanup, c);
    expect(Object.keys(env).filter((n) => !AGENT_READS.has(n))).toEqual([]);
    const agentEnv = resolveEnv(r, AGENT, agent);
    expect(Object.keys(env)).toContain("CNI_AGENT_RUN_DIR");
    for (const [k, v] of Object.entries(env)) expect(v, k).toBe(agentEnv[k]);
    expect(c.volumeMounts?.length).toBeGreaterThan(0);
    for (const m of c.volumeMounts ?? []) expect(hostPathOf(cleanup, c, m.mountPath)?.host, m.mountPath).toBe(hostPathOf(AGENT, agent, m.mountPath)?.host);
    expect(cleanup.spec.template.spec.hostNetwork).toBe(true); // the probe SNAT lives in the node netns
    expect(cleanup.metadata.namespace).toBe(AGENT.metadata.namespace);
  });
});
