import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, posix, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { LocalCa } from "../../src/ztunnel/tls/ca.js";
import { nameOf, render, type DaemonSetObj } from "../fixtures/deploy-render.js";

// deploy/Containerfile is built for real by scripts/image.sh (root, minutes); here its references
// are checked statically: the stages, every file it copies from the repository or from the build,
// the npm scripts it runs, the native-addon header trick, and the packages behind the commands
// the agent runs. The README's mesh-root commands are run for real and the result loaded by
// ztunnel's CA.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const TEXT = readFileSync(join(ROOT, "deploy", "Containerfile"), "utf8");

interface Stage {
  image: string;
  name: string | undefined;
  lines: string[];
}

function stages(): Stage[] {
  const out: Stage[] = [];
  // Join continuation lines; drop comments.
  const lines = TEXT.replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  for (const l of lines) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?$/i.exec(l);
    if (from) out.push({ image: from[1]!, name: from[2], lines: [] });
    else out.at(-1)?.lines.push(l);
  }
  return out;
}

interface Copy {
  from: string | undefined;
  src: string;
  dst: string;
}
const copies = (s: Stage): Copy[] =>
  s.lines.flatMap((l) => {
    const m = /^COPY\s+(?:--from=(\S+)\s+)?(.+)$/.exec(l);
    if (!m) return [];
    const parts = m[2]!.split(/\s+/);
    const dst = parts.pop()!;
    return parts.map((src) => ({ from: m[1], src, dst }));
  });
const runs = (s: Stage): string => s.lines.filter((l) => l.startsWith("RUN ")).join("\n");

const ALL = stages();
const BUILD = ALL.find((s) => s.name === "build")!;
const DEPS = ALL.find((s) => s.name === "deps")!;
const RUNTIME = ALL.at(-1)!;
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string>; engines: { node: string } };

describe("deploy/Containerfile", () => {
  it("builds on Node 20 Debian images, runs on the slim one", () => {
    expect(ALL.map((s) => [s.image, s.name])).toEqual([
      ["docker.io/library/node:20-bookworm", "build"],
      ["docker.io/library/node:20-bookworm", "deps"],
      ["docker.io/library/node:20-bookworm-slim", undefined],
    ]);
    // The package's engine range admits that major.
    expect(pkg.engines.node).toMatch(/^>=20\./);
  });

  it("the image tag the manifests use is the package version", () => {
    const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    for (const k of ["base/kustomization.yaml", "uninstall/kustomization.yaml"]) expect(readFileSync(join(ROOT, "deploy", k), "utf8")).toContain(`newTag: ${version}`);
    for (const f of ["base/cni-node-daemonset.yaml", "base/ztunnel-daemonset.yaml", "uninstall/cni-cleanup-daemonset.yaml"]) {
      expect(readFileSync(join(ROOT, "deploy", f), "utf8")).toContain(`image: ambient-node:${version}`);
    }
  });

  it("every file copied from the repository exists", () => {
    const fromContext = ALL.flatMap((s) => copies(s).filter((c) => c.from === undefined));
    expect(fromContext.length).toBeGreaterThan(5);
    for (const c of fromContext) {
      const p = join(ROOT, c.src);
      expect(existsSync(p), c.src).toBe(true);
      expect(statSync(p).isDirectory(), `${c.src}: a directory is copied with a trailing slash`).toBe(c.src.endsWith("/"));
    }
  });

  it("the build stage has every source the TypeScript build and the plugin bundle import", () => {
    const copied = copies(BUILD)
      .filter((c) => c.from === undefined)
      .map((c) => c.src);
    const inCopied = (rel: string): boolean => copied.some((c) => (c.endsWith("/") ? rel.startsWith(c) : rel === c));
    // Walk every module of src/ and cni-plugin/: relative imports must stay inside what is copied.
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
        const rel = posix.join(dir, e.name);
        if (e.isDirectory()) walk(rel);
        else if (rel.endsWith(".ts")) files.push(rel);
      }
    };
    walk("src");
    walk("cni-plugin");
    expect(files.length).toBeGreaterThan(50);
    for (const f of files) {
      expect(inCopied(f), f).toBe(true);
      const text = readFileSync(join(ROOT, f), "utf8");
      for (const m of text.matchAll(/from\s+["'](\.{1,2}\/[^"']+)["']/g)) {
        const target = posix.normalize(posix.join(posix.dirname(f), m[1]!)).replace(/\.js$/, ".ts");
        expect(inCopied(target), `${f} imports ${target}, which the build stage does not copy`).toBe(true);
      }
    }
    for (const f of ["package.json", "package-lock.json", ".npmrc", "tsconfig.json", "tsconfig.build.json", "scripts/build-cni-plugin.mjs", "native/"]) {
      expect(inCopied(f), f).toBe(true);
    }
  });

  it("the context filter keeps local build outputs out and every copied file in", () => {
    const ignore = readFileSync(join(ROOT, "deploy", "Containerfile.dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    for (const p of ["node_modules", "dist", "native/build"]) expect(ignore).toContain(p);
    const matches = (path: string, pattern: string): boolean =>
      pattern.startsWith("*") ? path.endsWith(pattern.slice(1)) : path === pattern || path.startsWith(pattern + "/");
    for (const c of ALL.flatMap((s) => copies(s).filter((x) => x.from === undefined))) {
      const path = c.src.replace(/\/$/, "");
      expect(ignore.filter((p) => matches(path, p)), c.src).toEqual([]);
    }
    // native/ is copied, native/build is not: the build stage compiles the addon itself.
    expect(matches("native/build/Release/x.node", "native/build")).toBe(true);
    expect(matches("native", "native/build")).toBe(false);
  });

  it("runs npm scripts that exist, installs dev tools only where it builds", () => {
    for (const m of TEXT.matchAll(/npm run ([\w:-]+)/g)) expect(Object.keys(pkg.scripts), m[1]).toContain(m[1]);
    expect(runs(BUILD)).toMatch(/npm ci(\s|$)/);
    expect(runs(BUILD)).toMatch(/npm run build && npm run build:cni/);
    expect(runs(DEPS)).toMatch(/npm ci --omit=dev --ignore-scripts/);
    expect(runs(RUNTIME)).not.toMatch(/npm/);
  });

  it("node-gyp finds the image's Node headers where the project's .npmrc points it", () => {
    const npmrc = readFileSync(join(ROOT, ".npmrc"), "utf8");
    expect(npmrc).toMatch(/^nodedir=\/usr$/m);
    // Official node images install under /usr/local; the link must come before npm ci.
    const build = BUILD.lines.join("\n");
    const link = build.indexOf("ln -s /usr/local/include/node /usr/include/node");
    expect(link).toBeGreaterThanOrEqual(0);
    expect(link).toBeLessThan(build.indexOf("npm ci"));
    expect(pkg.scripts.install).toContain("--nodedir=/usr");
  });

  it("the runtime copies only build outputs that exist: compiled code, the addon, the plugin, production modules", () => {
    const fromStages = copies(RUNTIME).filter((c) => c.from !== undefined);
    const names = new Set(ALL.map((s) => s.name).filter((n) => n !== undefined));
    for (const c of fromStages) expect(names.has(c.from ?? ""), c.from).toBe(true);
    const srcs = fromStages.map((c) => `${c.from}:${c.src}`).sort();
    expect(srcs).toEqual(
      [
        "build:/out/dist/",
        "build:/src/native/build/Release/ambient_native.node",
        "build:/src/package.json",
        "deps:/src/node_modules/",
      ].sort(),
    );
    // The addon path is the one src/native/binding.ts looks for above dist/src/native.
    const binding = readFileSync(join(ROOT, "src/native/binding.ts"), "utf8");
    expect(binding).toContain('const ADDON = join("native", "build", "Release", "ambient_native.node");');
    const addon = fromStages.find((c) => c.src.endsWith(".node"))!;
    expect(addon.dst).toBe("native/build/Release/ambient_native.node");
    // tsc's outDir/rootDir put src/ at dist/src/.
    const ts = JSON.parse(readFileSync(join(ROOT, "tsconfig.json"), "utf8")) as { compilerOptions: { outDir: string; rootDir: string } };
    expect(ts.compilerOptions).toMatchObject({ outDir: "dist", rootDir: "." });
    // package.json ("type": "module") makes dist/**/*.js ES modules at run time.
    expect(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).type).toBe("module");
    expect(RUNTIME.lines).toContain("WORKDIR /app");
  });

  it("the runtime holds every module the entry points import (also those shared with the plugin)", () => {
    // The build stage stages the runtime's dist/ in /out/dist with `cp -r <dirs> /out/dist/`.
    const cp = /cp -r ((?:dist\/[\w-]+\s+)+)\/out\/dist\//.exec(runs(BUILD));
    expect(cp, "the build stage stages dist/ dirs into /out/dist/").not.toBeNull();
    const staged = cp![1]!.trim().split(/\s+/).map((d) => `${d}/`);
    const inImage = (dist: string): boolean => staged.some((d) => dist.startsWith(d));
    const seen = new Set<string>();
    const queue = ["src/agent/main.ts", "src/ztunnel/main.ts", "src/cli/main.ts", "src/demo/selfcheck.ts"];
    while (queue.length > 0) {
      const f = queue.shift()!;
      if (seen.has(f)) continue;
      seen.add(f);
      const text = readFileSync(join(ROOT, f), "utf8");
      for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|new URL\(\s*)["'](\.{1,2}\/[^"']+\.js)["']/g)) {
        const target = posix.normalize(posix.join(posix.dirname(f), m[1]!)).replace(/\.js$/, ".ts");
        if (existsSync(join(ROOT, target))) queue.push(target);
      }
    }
    // The case this test exists for: modules the agent shares with the plugin (they once lived in
    // cni-plugin/ and were missing from the image: ERR_MODULE_NOT_FOUND at start).
    expect([...seen].some((f) => f.startsWith("src/cni-contract/") || f.startsWith("cni-plugin/")), "the agent imports the plugin contract").toBe(true);
    expect(seen.size).toBeGreaterThan(50);
    const missing = [...seen].map((f) => `dist/${f.replace(/\.ts$/, ".js")}`).filter((d) => !inImage(d));
    expect(missing).toEqual([]);
    // And the cleanup script's imports, relative to /app/deploy/uninstall.
    const cleanup = readFileSync(join(ROOT, "deploy/uninstall/cni-cleanup.mjs"), "utf8");
    for (const m of cleanup.matchAll(/from "(\.\.\/[^"]+)"/g)) expect(inImage(posix.join("deploy/uninstall", m[1]!)), m[1]).toBe(true);
  });

  it("the runtime has the programs the agent runs", () => {
    const PROVIDER: Record<string, string> = {
      iptables: "iptables",
      ip6tables: "iptables",
      ipset: "ipset",
      ip: "iproute2",
      nft: "nftables",
      nsenter: "util-linux",
    };
    const apt = /apt-get install -y --no-install-recommends ([^&]+)/.exec(runs(RUNTIME))?.[1]?.trim().split(/\s+/) ?? [];
    // The programs really appear as commands in the agent's code...
    const agentText = readdirSync(join(ROOT, "src/agent"), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith(".ts"))
      .map((f) => readFileSync(join(ROOT, "src/agent", f), "utf8"))
      .join("\n");
    for (const cmd of Object.keys(PROVIDER)) expect(agentText, cmd).toContain(`"${cmd}"`);
    // ...and each comes from a package the image installs.
    for (const pkgName of new Set(Object.values(PROVIDER))) expect(apt, pkgName).toContain(pkgName);
  });
});

describe("deploy/README.md mesh root commands", () => {
  const readme = readFileSync(join(ROOT, "deploy", "README.md"), "utf8");
  const block = /<!-- mesh-root:[^>]*-->\s*```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
  const lines = block.split("\n").map((l) => l.trim()).filter((l) => l !== "");

  it("produce a root that ztunnel's CA loads and signs with", async () => {
    const openssl = lines.filter((l) => l.startsWith("openssl "));
    expect(openssl).toHaveLength(2);
    const dir = await mkdtemp(join(tmpdir(), "deploy-root-"));
    try {
      for (const l of openssl) execFileSync("sh", ["-c", l], { cwd: dir, stdio: "pipe" });
      const ca = await LocalCa.fromDir(dir);
      const leaf = await ca.issue({ trustDomain: "cluster.local", namespace: "mesh", serviceAccount: "web" });
      expect(leaf.certPem).toContain("BEGIN CERTIFICATE");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("create the Secret the ztunnel DaemonSet mounts, with the file names the CA reads", () => {
    const secret = lines.find((l) => l.includes("create secret"));
    expect(secret).toBe("kubectl -n ambient-system create secret generic ambient-mesh-root --from-file=root-cert.pem --from-file=ca-key.pem");
    // The namespace is created first, and it is the one the standalone overlay's ztunnel runs in.
    expect(lines.indexOf("kubectl create namespace ambient-system")).toBeGreaterThanOrEqual(0);
    expect(lines.indexOf("kubectl create namespace ambient-system")).toBeLessThan(lines.indexOf(secret!));
    const zt = render("overlays/standalone").find((o) => o.kind === "DaemonSet" && nameOf(o) === "ambient-ztunnel") as unknown as DaemonSetObj;
    expect(zt.metadata.namespace).toBe("ambient-system");
    expect(zt.spec.template.spec.volumes?.some((v) => v.secret?.secretName === "ambient-mesh-root")).toBe(true);
  });
});
