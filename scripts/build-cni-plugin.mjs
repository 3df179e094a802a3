// Builds the CNI plugin into one self-contained executable (hosts have no Node.js):
//   esbuild bundle (CJS, node20) → Node single-executable blob → copy of this node + postject.
// Output: dist/cni-plugin/ambient-cni. Skips all work when no input changed (npm test runs
// this before every test run), and replaces the output atomically (temp + rename) so a
// concurrent reader never sees a half-written executable.
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outDir = join(root, "dist", "cni-plugin");
const work = join(outDir, "build");
const exe = join(outDir, "ambient-cni");
const stampFile = join(work, "stamp.json");
const entry = join(root, "cni-plugin", "main.ts");
const FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";
const force = process.argv.includes("--force");

function sha(path) {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

// Everything the output depends on besides the bundled sources: this script and the node binary.
function toolchain() {
  const st = statSync(process.execPath);
  return { script: sha(fileURLToPath(import.meta.url)), node: `${process.execPath}:${process.version}:${st.size}:${st.mtimeMs}` };
}

function upToDate() {
  if (force || !existsSync(exe) || !existsSync(stampFile)) return false;
  try {
    const stamp = JSON.parse(readFileSync(stampFile, "utf8"));
    if (JSON.stringify(stamp.toolchain) !== JSON.stringify(toolchain())) return false;
    if (stamp.exeSize !== statSync(exe).size) return false;
    return Object.entries(stamp.inputs).every(([p, h]) => existsSync(join(root, p)) && sha(join(root, p)) === h);
  } catch {
    return false;
  }
}

async function build() {
  const started = Date.now();
  // Per-process scratch dir: two test projects may start a build at the same moment.
  const scratch = join(work, `tmp-${process.pid}`);
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const esbuild = await import("esbuild");
  const bundle = join(scratch, "ambient-cni.cjs");
  const res = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    // import() of a built-in stays import() in a CJS bundle, and the SEA's code-cached main
    // cannot run it: lower it to require() (lazy loading is kept, it runs when reached).
    supported: { "dynamic-import": false },
    outfile: bundle,
    minify: true,
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
  });
  const inputs = {};
  for (const p of Object.keys(res.metafile.inputs)) inputs[p] = sha(join(root, p));

  const blob = join(scratch, "sea-prep.blob");
  const seaConfig = join(scratch, "sea-config.json");
  writeFileSync(
    seaConfig,
    JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true }),
  );
  execFileSync(process.execPath, ["--experimental-sea-config", seaConfig], { stdio: ["ignore", "pipe", "pipe"] });

  const tmp = `${exe}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  copyFileSync(process.execPath, tmp);
  chmodSync(tmp, 0o755);
  const { inject } = (await import("postject")).default;
  // postject's ELF library warns about every unnamed note section; the result is fine.
  const warn = console.warn;
  console.warn = () => undefined;
  try {
    await inject(tmp, "NODE_SEA_BLOB", readFileSync(blob), { sentinelFuse: FUSE });
  } finally {
    console.warn = warn;
  }
  renameSync(tmp, exe);
  renameSync(bundle, join(work, "ambient-cni.cjs")); // kept for the start-up benchmark
  writeFileSync(join(scratch, "stamp.json"), JSON.stringify({ toolchain: toolchain(), inputs, exeSize: statSync(exe).size }, null, 2));
  renameSync(join(scratch, "stamp.json"), stampFile);
  rmSync(scratch, { recursive: true, force: true });
  console.log(`cni plugin: built ${exe} (${(statSync(exe).size / 1e6).toFixed(1)} MB) in ${Date.now() - started} ms`);
}

if (upToDate()) {
  console.log(`cni plugin: ${exe} is up to date`);
} else {
  await build();
}
