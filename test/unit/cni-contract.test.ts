import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../cni-plugin/config.js";
import { loadAgentConfig } from "../../src/agent/config.js";
import { decideEnrollment } from "../../src/agent/enroll/decide.js";
import { pluginEntry } from "../../src/agent/install/entry.js";
import { DEFAULT_SELECTORS, parseEnablementSelectors, podEnrollment, SelectorError } from "../../src/cni-contract/index.js";

const ROOT = join(import.meta.dirname, "..", "..");

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return sources(p);
    return n.endsWith(".ts") ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  return [...readFileSync(file, "utf8").matchAll(/(?:from|import)\s*\(?\s*"([^"]+)"/g)].map((m) => m[1]!);
}

const CUSTOM = [
  { podSelector: { matchLabels: { mesh: "on" } } },
  { namespaceSelector: { matchExpressions: [{ key: "team", operator: "In", values: ["payments"] }] }, podSelector: { matchExpressions: [{ key: "legacy", operator: "DoesNotExist", values: [] }] } },
];

describe("the plugin ↔ agent contract lives in one neutral module", () => {
  it("cni-plugin/ never imports the agent, and the agent never imports cni-plugin/", () => {
    const bad: string[] = [];
    for (const f of sources(join(ROOT, "cni-plugin"))) {
      for (const i of importsOf(f)) if (i.includes("src/agent/") || i.includes("/agent/")) bad.push(`${relative(ROOT, f)} → ${i}`);
    }
    for (const f of sources(join(ROOT, "src", "agent"))) {
      for (const i of importsOf(f)) if (i.includes("cni-plugin/")) bad.push(`${relative(ROOT, f)} → ${i}`);
    }
    for (const f of sources(join(ROOT, "src", "cni-contract"))) {
      for (const i of importsOf(f)) if (i.includes("cni-plugin/") || i.includes("/agent/")) bad.push(`${relative(ROOT, f)} → ${i}`);
    }
    expect(bad).toEqual([]);
  });

  it("the installer writes the agent's selectors into the plugin config, and the plugin reads back the same list", () => {
    const agent = loadAgentConfig({ NODE_NAME: "n", AMBIENT_ENABLEMENT_SELECTORS: JSON.stringify(CUSTOM) });
    const entry = pluginEntry({ runDir: "/run/x", enablementSelectors: agent.enablementSelectors });
    const plugin = parseConfig({ cniVersion: "1.0.0", name: "k8s", ...entry });
    expect(plugin.enablementSelectors).toEqual(agent.enablementSelectors);
    expect(pluginEntry({ runDir: "/run/x" }).enablement_selectors).toEqual(DEFAULT_SELECTORS);
    expect(loadAgentConfig({ NODE_NAME: "n" }).enablementSelectors).toEqual(DEFAULT_SELECTORS);
  });

  it("for any pod, the agent with custom selectors decides as the plugin configured with them", () => {
    const agentCfg = loadAgentConfig({ NODE_NAME: "n", AMBIENT_ENABLEMENT_SELECTORS: JSON.stringify(CUSTOM) });
    const pluginCfg = parseConfig({ cniVersion: "1.0.0", name: "k8s", ...pluginEntry({ runDir: "/r", enablementSelectors: agentCfg.enablementSelectors }) });
    const labels = fc.dictionary(fc.constantFrom("mesh", "legacy", "team", "istio.io/dataplane-mode"), fc.constantFrom("on", "off", "payments", "ambient", "none"));
    fc.assert(
      fc.property(labels, labels, fc.boolean(), (podLabels, nsLabels, hostNetwork) => {
        const pod = { uid: "u", name: "p", namespace: "apps", serviceAccount: "sa", labels: podLabels, annotations: {}, hostNetwork, ips: [], terminal: false, requiresIps: false };
        const agent = decideEnrollment(pod, nsLabels, { excludeNamespaces: agentCfg.excludeNamespaces, agentNamespace: agentCfg.podNamespace, selectors: agentCfg.enablementSelectors });
        const plugin = podEnrollment({ labels: podLabels, annotations: {}, hostNetwork }, nsLabels, pluginCfg.enablementSelectors);
        expect(agent.enroll).toBe(plugin.ambient);
      }),
    );
    // And the custom list really differs from the default: the namespace label alone does not enroll.
    const ambientNsPod = { uid: "u", name: "p", namespace: "apps", serviceAccount: "sa", labels: {}, annotations: {}, hostNetwork: false, ips: [], terminal: false, requiresIps: false };
    expect(decideEnrollment(ambientNsPod, { "istio.io/dataplane-mode": "ambient" }, { excludeNamespaces: [], agentNamespace: "x", selectors: agentCfg.enablementSelectors }).enroll).toBe(false);
    expect(decideEnrollment(ambientNsPod, { "istio.io/dataplane-mode": "ambient" }, { excludeNamespaces: [], agentNamespace: "x" }).enroll).toBe(true);
  });

  it.each([
    ["not a list", { a: 1 }, /must be a list/],
    ["bad operator", [{ podSelector: { matchExpressions: [{ key: "k", operator: "Is", values: [] }] } }], /operator must be/],
    ["In without values", [{ namespaceSelector: { matchExpressions: [{ key: "k", operator: "In" }] } }], /In needs values/],
  ])("a selector list that is %s is refused with where it is wrong", (_what, v, msg) => {
    expect(() => parseEnablementSelectors(v)).toThrow(SelectorError);
    expect(() => parseEnablementSelectors(v)).toThrow(msg);
  });

  it("a bad AMBIENT_ENABLEMENT_SELECTORS stops the agent naming the variable", () => {
    expect(() => loadAgentConfig({ NODE_NAME: "n", AMBIENT_ENABLEMENT_SELECTORS: "[{" })).toThrow(/AMBIENT_ENABLEMENT_SELECTORS: is not JSON/);
    expect(() => loadAgentConfig({ NODE_NAME: "n", AMBIENT_ENABLEMENT_SELECTORS: '[{"podSelector": 3}]' })).toThrow(/AMBIENT_ENABLEMENT_SELECTORS: the list\[0\]\.podSelector must be an object/);
  });
});
