import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { planCleanup, planInstall, type ConfFile } from "../../src/agent/install/conflist.js";
import { pluginEntry } from "../../src/agent/install/entry.js";
import type { EnablementSelector } from "../../src/cni-contract/index.js";

// Golden cases for chaining our plugin into a CNI net dir: each case has in/ (the net dir
// before), case.json (CNI_CONF_NAME), and the expected out/ (the net dir after) + plan.json.
// UPDATE_GOLDEN=1 rewrites the expectations; review the diff before committing.
const GOLDEN = join(import.meta.dirname, "..", "golden", "cni");
const update = process.env.UPDATE_GOLDEN === "1";

// case.json may name the node's enablement selectors (AMBIENT_ENABLEMENT_SELECTORS); the
// entry then carries them, so the plugin decides exactly as the agent does.
function entryFor(selectors?: EnablementSelector[]): ReturnType<typeof pluginEntry> {
  return pluginEntry({
    runDir: "/var/run/istio-cni",
    podNamespace: "istio-system",
    kubeconfigPath: "/var/run/istio-cni/ambient-cni-kubeconfig",
    ...(selectors !== undefined ? { enablementSelectors: selectors } : {}),
  });
}
const ENTRY = entryFor();

function readDir(dir: string): ConfFile[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .sort()
    .map((name) => ({ name, content: readFileSync(join(dir, name), "utf8") }));
}

function asRecord(files: ConfFile[]): Record<string, string> {
  return Object.fromEntries(files.map((f) => [f.name, f.content]));
}

function compare(caseDir: string, after: Map<string, string>, plan: unknown): void {
  const outDir = join(caseDir, "out");
  const planFile = join(caseDir, "plan.json");
  const sorted = [...after.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, content]) => ({ name, content }));
  if (update) {
    rmSync(outDir, { recursive: true, force: true });
    mkdirSync(outDir, { recursive: true });
    for (const f of sorted) writeFileSync(join(outDir, f.name), f.content);
    writeFileSync(planFile, JSON.stringify(plan, null, 2) + "\n");
  }
  expect(asRecord(sorted)).toEqual(asRecord(readDir(outDir)));
  expect(plan).toEqual(JSON.parse(readFileSync(planFile, "utf8")));
}

function cases(kind: string): string[] {
  return readdirSync(join(GOLDEN, kind)).sort();
}

describe("conflist insertion goldens", () => {
  const names = cases("install");
  it("has at least 10 cases", () => {
    expect(names.length).toBeGreaterThanOrEqual(10);
  });
  for (const name of names) {
    it(name, () => {
      const dir = join(GOLDEN, "install", name);
      const conf = JSON.parse(readFileSync(join(dir, "case.json"), "utf8")) as { confName?: string; enablementSelectors?: EnablementSelector[] };
      const entry = entryFor(conf.enablementSelectors);
      const input = readDir(join(dir, "in"));
      const plan = planInstall(input, entry, conf.confName);
      const after = new Map(input.map((f) => [f.name, f.content]));
      if (plan.action === "write") {
        if (plan.removeSource) after.delete(plan.source);
        after.set(plan.target, plan.content);
      }
      compare(dir, after, plan);
      // Applying the result again must be a no-op (the watcher re-runs after its own writes).
      const again = planInstall([...after.entries()].map(([n, c]) => ({ name: n, content: c })), entry, conf.confName);
      expect(again.action === "write").toBe(false);
    });
  }
});

describe("conflist cleanup goldens", () => {
  for (const name of cases("cleanup")) {
    it(name, () => {
      const dir = join(GOLDEN, "cleanup", name);
      const input = readDir(join(dir, "in"));
      const steps = planCleanup(input, ENTRY.type);
      const after = new Map(input.map((f) => [f.name, f.content]));
      for (const s of steps) {
        if (s.action === "remove") after.delete(s.name);
        else after.set(s.name, s.content);
      }
      compare(dir, after, steps.map((s) => ({ name: s.name, action: s.action })));
      expect(planCleanup([...after.entries()].map(([n, c]) => ({ name: n, content: c })), ENTRY.type)).toEqual([]);
    });
  }
});
