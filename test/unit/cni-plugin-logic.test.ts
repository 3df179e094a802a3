import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseCniArgs, podArgs } from "../../cni-plugin/cni/args.js";
import { readCmdEnv } from "../../cni-plugin/cni/env.js";
import { CniError } from "../../cni-plugin/cni/errors.js";
import { formatResult, parseResult } from "../../cni-plugin/cni/result.js";
import { SUPPORTED_VERSIONS, compareVersions } from "../../cni-plugin/cni/version.js";
import { commandAllowed, parseConfig } from "../../cni-plugin/config.js";
import { DEFAULT_SELECTORS, podEnrollment, selectorMatches } from "../../src/cni-contract/index.js";

function cniCode(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof CniError) return err.cniCode;
    throw err;
  }
  return undefined;
}

const V1_RESULT = {
  cniVersion: "1.1.0",
  interfaces: [
    { name: "cni0", mac: "aa:aa:aa:aa:aa:aa" },
    { name: "eth0", mac: "bb:bb:bb:bb:bb:bb", sandbox: "/var/run/netns/x", mtu: 1450, socketPath: "/s" },
  ],
  ips: [
    { interface: 1, address: "10.88.0.5/16", gateway: "10.88.0.1" },
    { interface: 1, address: "fd00::5/64" },
  ],
  routes: [{ dst: "0.0.0.0/0", gw: "10.88.0.1", mtu: 1400, table: 100 }],
  dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
};

describe("prevResult conversion", () => {
  it("prints 0.3.x/0.4.0 results with an ip version and only legacy fields", () => {
    for (const v of ["0.3.0", "0.3.1", "0.4.0"] as const) {
      expect(formatResult(parseResult(V1_RESULT), v)).toEqual({
        cniVersion: v,
        interfaces: [
          { name: "cni0", mac: "aa:aa:aa:aa:aa:aa" },
          { name: "eth0", mac: "bb:bb:bb:bb:bb:bb", sandbox: "/var/run/netns/x" },
        ],
        ips: [
          { version: "4", interface: 1, address: "10.88.0.5/16", gateway: "10.88.0.1" },
          { version: "6", interface: 1, address: "fd00::5/64" },
        ],
        routes: [{ dst: "0.0.0.0/0", gw: "10.88.0.1" }],
        dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
      });
    }
  });

  it("prints 1.x results without the ip version, keeping 1.1 fields", () => {
    const legacy = formatResult(parseResult(V1_RESULT), "0.4.0");
    for (const v of ["1.0.0", "1.1.0"] as const) {
      const out = formatResult(parseResult(legacy), v);
      expect(out.ips).toEqual([
        { interface: 1, address: "10.88.0.5/16", gateway: "10.88.0.1" },
        { interface: 1, address: "fd00::5/64" },
      ]);
      expect(out.cniVersion).toBe(v);
    }
    expect(formatResult(parseResult(V1_RESULT), "1.1.0").routes).toEqual([{ dst: "0.0.0.0/0", gw: "10.88.0.1", mtu: 1400, table: 100 }]);
  });

  it("keeps every ip through any chain of version conversions (property)", () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), fc.integer({ min: 0, max: 32 })).map(([a, b, c, d, p]) => `${a}.${b}.${c}.${d}/${p}`);
    const v6 = fc.tuple(fc.nat(0xffff), fc.nat(0xffff), fc.integer({ min: 0, max: 128 })).map(([a, b, p]) => `fd00:${a.toString(16)}::${b.toString(16)}/${p}`);
    const ip = fc.record({ address: fc.oneof(v4, v6), interface: fc.option(fc.nat(3), { nil: undefined }), gateway: fc.option(fc.constant("10.0.0.1"), { nil: undefined }) });
    const version = fc.constantFrom(...SUPPORTED_VERSIONS);
    fc.assert(
      fc.property(fc.array(ip, { maxLength: 4 }), fc.array(version, { minLength: 1, maxLength: 4 }), (ips, chain) => {
        let cur: Record<string, unknown> = { cniVersion: "1.0.0", ips };
        for (const v of chain) {
          cur = formatResult(parseResult(cur), v);
          expect(cur.cniVersion).toBe(v);
        }
        const out = (cur.ips ?? []) as Record<string, unknown>[];
        expect(out.map(({ version: _v, ...rest }) => rest)).toEqual(
          ips.map((i) => Object.fromEntries(Object.entries({ interface: i.interface, address: i.address, gateway: i.gateway }).filter(([, x]) => x !== undefined))),
        );
        for (const o of out) {
          if ((chain.at(-1) ?? "").startsWith("0.")) expect(o.version).toBe(String(o.address).includes(":") ? "6" : "4");
          else expect(o.version).toBeUndefined();
        }
      }),
    );
  });

  it("prints an empty result of the config's version without prevResult", () => {
    for (const v of SUPPORTED_VERSIONS) expect(formatResult(undefined, v)).toEqual({ cniVersion: v, dns: {} });
  });

  it("rejects malformed prevResults with a decode error", () => {
    expect(cniCode(() => parseResult([]))).toBe(6);
    expect(cniCode(() => parseResult({ ips: [{ address: "10.0.0.1" }] }))).toBe(6);
    expect(cniCode(() => parseResult({ ips: [{ address: "10.0.0.1/8", interface: -1 }] }))).toBe(6);
    expect(cniCode(() => parseResult({ interfaces: "eth0" }))).toBe(6);
  });
});

describe("CNI environment", () => {
  const full = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_NETNS: "/n", CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin" };
  it("requires per-command variables (code 4)", () => {
    expect(cniCode(() => readCmdEnv({}))).toBe(4);
    expect(cniCode(() => readCmdEnv({ CNI_COMMAND: "FROB" }))).toBe(4);
    expect(cniCode(() => readCmdEnv({ ...full, CNI_NETNS: "" }))).toBe(4);
    expect(cniCode(() => readCmdEnv({ ...full, CNI_IFNAME: "a-very-long-interface" }))).toBe(4);
    expect(cniCode(() => readCmdEnv({ ...full, CNI_CONTAINERID: "bad id" }))).toBe(4);
    expect(readCmdEnv({ ...full, CNI_COMMAND: "DEL", CNI_NETNS: "" }).netns).toBe("");
    expect(readCmdEnv({ CNI_COMMAND: "VERSION" }).command).toBe("VERSION");
    expect(readCmdEnv({ CNI_COMMAND: "STATUS" }).command).toBe("STATUS");
  });

  it("parses CNI_ARGS as runtimes send them", () => {
    const clean = { identityProblems: [], otherProblems: [], namespaceSound: true };
    expect(podArgs("IgnoreUnknown=1;K8S_POD_NAME=web")).toEqual({ podName: "web", podNamespace: "", podUid: "", infraContainerId: "", ...clean });
    const k = podArgs("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1");
    expect(k).toEqual({ podName: "p", podNamespace: "ns", podUid: "u-1", infraContainerId: "abc", ...clean });
    expect(parseCniArgs("A=1;;junk;B=x=y").get("B")).toBe("x=y");
  });

  it.each([
    ["K8S_POD_NAMESPACE=mesh;K8S_POD_NAME", /"K8S_POD_NAME" is not KEY=VALUE/],
    ["K8S_POD_NAMESPACE=mesh; K8S_POD_NAME=web", /key " K8S_POD_NAME" is not K8S_POD_NAME/],
    ["K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=web;K8S_POD_NAME=db", /K8S_POD_NAME is given twice/],
    ["K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=we b", /K8S_POD_NAME="we b" is not a pod name/],
    ["K8S_POD_NAMESPACE=Mesh!;K8S_POD_NAME=web", /K8S_POD_NAMESPACE="Mesh!" is not a namespace name/],
  ])("a garbled identity in %j is reported, not guessed around", (raw, problem) => {
    const a = podArgs(raw);
    expect(a.identityProblems.join("; ")).toMatch(problem);
  });

  it("other malformed pairs are reported apart from the identity", () => {
    const a = podArgs("K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=web;junk");
    expect(a).toMatchObject({ podName: "web", podNamespace: "mesh", identityProblems: [], otherProblems: ['"junk" is not KEY=VALUE'], namespaceSound: true });
  });
});

describe("plugin config", () => {
  const base = { cniVersion: "1.0.0", name: "net", type: "ambient-cni" };
  it("fills Istio's defaults", () => {
    const c = parseConfig(base);
    expect(c.runDir).toBe("/var/run/istio-cni");
    expect(c.excludeNamespaces).toEqual(["kube-system"]);
    expect(c.ambientEnabled).toBe(false);
    expect(c.enablementSelectors).toEqual(DEFAULT_SELECTORS);
    expect(c.kubeconfig).toBe("");
  });

  it("reads Istio's nested kubeconfig location too", () => {
    expect(parseConfig({ ...base, kubernetes: { kubeconfig: "/k" } }).kubeconfig).toBe("/k");
    expect(parseConfig({ ...base, kubeconfig: "/top", kubernetes: { kubeconfig: "/k" } }).kubeconfig).toBe("/top");
  });

  it("maps errors to spec codes", () => {
    expect(cniCode(() => parseConfig({ ...base, cniVersion: "0.2.0" }))).toBe(1);
    expect(cniCode(() => parseConfig({ ...base, cniVersion: undefined }))).toBe(1);
    expect(cniCode(() => parseConfig({ ...base, name: "" }))).toBe(7);
    expect(cniCode(() => parseConfig({ ...base, ambient_enabled: "yes" }))).toBe(7);
    expect(cniCode(() => parseConfig({ ...base, exclude_namespaces: "a" }))).toBe(7);
    expect(cniCode(() => parseConfig({ ...base, plugin_log_level: "loud" }))).toBe(7);
    expect(cniCode(() => parseConfig({ ...base, enablement_selectors: [{ podSelector: { matchExpressions: [{ key: "k", operator: "Near" }] } }] }))).toBe(7);
  });

  it("allows CHECK from 0.4.0 and STATUS/GC from 1.1.0 only", () => {
    expect(commandAllowed("CHECK", "0.3.1")?.cniCode).toBe(1);
    expect(commandAllowed("CHECK", "0.4.0")).toBeUndefined();
    expect(commandAllowed("STATUS", "1.0.0")?.cniCode).toBe(1);
    expect(commandAllowed("GC", "1.0.0")?.cniCode).toBe(1);
    expect(commandAllowed("GC", "1.1.0")).toBeUndefined();
    expect(compareVersions("0.10.0", "0.4.0")).toBe(1);
  });
});

describe("enrollment", () => {
  const pod = (labels: Record<string, string> = {}, extra: { annotations?: Record<string, string>; hostNetwork?: boolean } = {}) => ({
    labels,
    annotations: extra.annotations ?? {},
    hostNetwork: extra.hostNetwork ?? false,
  });
  const ambientNs = { "istio.io/dataplane-mode": "ambient" };

  it("enrolls by namespace or pod label, honours opt-out, never sidecar or hostNetwork pods", () => {
    expect(podEnrollment(pod(), ambientNs, DEFAULT_SELECTORS).ambient).toBe(true);
    expect(podEnrollment(pod({ "istio.io/dataplane-mode": "ambient" }), {}, DEFAULT_SELECTORS).ambient).toBe(true);
    expect(podEnrollment(pod(), {}, DEFAULT_SELECTORS).ambient).toBe(false);
    expect(podEnrollment(pod({ "istio.io/dataplane-mode": "none" }), ambientNs, DEFAULT_SELECTORS).ambient).toBe(false);
    expect(podEnrollment(pod({}, { hostNetwork: true }), ambientNs, DEFAULT_SELECTORS).ambient).toBe(false);
    expect(podEnrollment(pod({}, { annotations: { "sidecar.istio.io/status": "{}" } }), ambientNs, DEFAULT_SELECTORS).ambient).toBe(false);
  });

  it("implements label selector operators", () => {
    const l = { a: "1", b: "2" };
    expect(selectorMatches({}, l)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: "a", operator: "In", values: ["1", "3"] }] }, l)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: "c", operator: "In", values: ["1"] }] }, l)).toBe(false);
    expect(selectorMatches({ matchExpressions: [{ key: "c", operator: "NotIn", values: ["1"] }] }, l)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: "a", operator: "Exists", values: [] }] }, l)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: "a", operator: "DoesNotExist", values: [] }] }, l)).toBe(false);
    expect(selectorMatches({ matchLabels: { a: "1", b: "3" } }, l)).toBe(false);
  });

  it("uses custom selectors and ignores empty entries", () => {
    const sel = [{}, { namespaceSelector: { matchLabels: { team: "x" } } }];
    expect(podEnrollment(pod(), { team: "x" }, sel).ambient).toBe(true);
    expect(podEnrollment(pod(), {}, sel).ambient).toBe(false);
  });
});
