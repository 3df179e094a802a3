// Builds the CNI plugin into one self-contained executable (hosts have no Node.js):
//   esbuild bundle (CJS, node20) → one training ADD against a stand-in agent, which leaves a V8
//   code cache of everything an ADD runs → Node single-executable blob (loader cni-plugin/sea-main.ts
//   + bundle and cache as assets) → copy of this node + postject.
// Output: dist/cni-plugin/ambient-cni. Skips all work when no input changed (npm test runs
// this before every test run), and replaces the output atomically (temp + rename) so a
// concurrent reader never sees a half-written executable.
import { createHash } from "node:crypto";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outDir = join(root, "dist", "cni-plugin");
const work = join(outDir, "build");
const exe = join(outDir, "ambient-cni");
const stampFile = join(work, "stamp.json");
const entry = join(root, "cni-plugin", "main.ts");
const seaEntry = join(root, "cni-plugin", "sea-main.ts");
// Asset names, the same in cni-plugin/sea-main.ts.
const PROGRAM_ASSET = "ambient-cni.js";
const CODE_CACHE_ASSET = "ambient-cni.codecache";
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

// Node's CommonJS wrapper: the training run and the executable compile exactly this text
// (V8 accepts a code cache only for the source it was made from).
const wrapProgram = (code) => `(function (exports, require, module, __filename, __dirname) {${code}\n})`;

function bundle(esbuild, entryPoint, outfile) {
  return esbuild.build({
    entryPoints: [entryPoint],
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    // import() of a built-in stays import() in a CJS bundle, and neither a code-cached SEA main
    // nor a vm.Script can run it: lower it to require() (still lazy: it runs when reached).
    supported: { "dynamic-import": false },
    outfile,
    minify: true,
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
  });
}

function runChild(cmd, args, env, stdin) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

// The training run: this script with --train compiles the wrapped program as the executable
// will, runs one ADD (info logging, log forwarding) against a stand-in agent that answers 200,
// and writes the code cache on exit. It runs under this node with default flags (no inherited
// NODE_OPTIONS), which is what the executable's V8 checks the cache against.
async function trainCodeCache(programFile, scratch) {
  // Short path: unix socket paths are limited to 107 bytes.
  const runDir = mkdtempSync(join(tmpdir(), "ambient-cni-train-"));
  const { createServer } = await import("node:http");
  const seen = [];
  const handler = (req, res) => {
    req.resume();
    req.on("end", () => {
      seen.push(req.url);
      res.writeHead(200, { "Content-Type": "application/json" }).end(req.url === "/cmdadd" ? '{"enrolled":true}' : "");
    });
  };
  const servers = ["pluginevent.sock", "log.sock"].map((name) => ({ server: createServer(handler), path: join(runDir, name) }));
  const cacheFile = join(scratch, "code-cache.bin");
  try {
    for (const { server, path } of servers) {
      await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(path, resolve);
      });
    }
    const prevResult = { cniVersion: "1.1.0", ips: [{ interface: 0, address: "10.0.0.5/24", gateway: "10.0.0.1" }] };
    const conf = { cniVersion: "1.1.0", name: "train", type: "ambient-cni", ambient_enabled: true, cni_agent_run_dir: runDir, prevResult };
    const env = {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "train",
      CNI_NETNS: "/var/run/netns/train",
      CNI_IFNAME: "eth0",
      CNI_PATH: "/opt/cni/bin",
      CNI_ARGS: "K8S_POD_NAMESPACE=train;K8S_POD_NAME=p",
    };
    const r = await runChild(process.execPath, [fileURLToPath(import.meta.url), "--train", programFile, cacheFile], env, JSON.stringify(conf));
    if (r.code !== 0 || !seen.includes("/cmdadd") || !existsSync(cacheFile)) {
      throw new Error(`cni plugin: the training ADD failed (exit ${r.code}, agent saw ${JSON.stringify(seen)}): ${r.stdout} ${r.stderr}`);
    }
    return cacheFile;
  } finally {
    for (const { server } of servers) await new Promise((resolve) => server.close(resolve));
    rmSync(runDir, { recursive: true, force: true });
  }
}

async function train(programFile, cacheFile) {
  const { Script } = await import("node:vm");
  const { createRequire } = await import("node:module");
  const script = new Script(readFileSync(programFile, "utf8"), { filename: PROGRAM_ASSET });
  process.on("exit", () => writeFileSync(cacheFile, script.createCachedData()));
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, createRequire(import.meta.url), mod, programFile, dirname(programFile));
}

async function build() {
  const started = Date.now();
  // Per-process scratch dir: two test projects may start a build at the same moment.
  const scratch = join(work, `tmp-${process.pid}`);
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const esbuild = await import("esbuild");
  const bundleFile = join(scratch, "ambient-cni.cjs");
  const loaderFile = join(scratch, "sea-main.cjs");
  const results = [await bundle(esbuild, entry, bundleFile), await bundle(esbuild, seaEntry, loaderFile)];
  const inputs = {};
  for (const res of results) for (const p of Object.keys(res.metafile.inputs)) inputs[p] = sha(join(root, p));

  const programFile = join(scratch, PROGRAM_ASSET);
  writeFileSync(programFile, wrapProgram(readFileSync(bundleFile, "utf8")));
  const cacheFile = await trainCodeCache(programFile, scratch);

  const blob = join(scratch, "sea-prep.blob");
  const seaConfig = join(scratch, "sea-config.json");
  writeFileSync(
    seaConfig,
    JSON.stringify({
      main: loaderFile,
      output: blob,
      disableExperimentalSEAWarning: true,
      useCodeCache: true,
      assets: { [PROGRAM_ASSET]: programFile, [CODE_CACHE_ASSET]: cacheFile },
    }),
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
  renameSync(bundleFile, join(work, "ambient-cni.cjs")); // kept for the start-up benchmark
  writeFileSync(join(scratch, "stamp.json"), JSON.stringify({ toolchain: toolchain(), inputs, exeSize: statSync(exe).size }, null, 2));
  renameSync(join(scratch, "stamp.json"), stampFile);
  rmSync(scratch, { recursive: true, force: true });
  console.log(`cni plugin: built ${exe} (${(statSync(exe).size / 1e6).toFixed(1)} MB) in ${Date.now() - started} ms`);
}

if (process.argv[2] === "--train") {
  await train(process.argv[3], process.argv[4]);
} else if (upToDate()) {
  console.log(`cni plugin: ${exe} is up to date`);
} else {
  await build();
}
