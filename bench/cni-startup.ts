// Start-up cost of the CNI plugin executable: wall time per invocation (the runtime waits for
// it on every pod start) and peak RSS, for VERSION, a pass-through ADD (excluded namespace)
// and a full ADD against a local agent. Also compares with `node bundle.cjs`.
//   npm run build && npm run build:cni && node dist/bench/cni-startup.js [iterations]
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPluginEventServer } from "../src/agent/pluginevent/server.js";
import { benchAddInvocation } from "./lib/cni.js";

const ROOT = join(import.meta.dirname, "..", "..");
const EXE = join(ROOT, "dist", "cni-plugin", "ambient-cni");
const BUNDLE = join(ROOT, "dist", "cni-plugin", "build", "ambient-cni.cjs");
const N = Number(process.argv[2] ?? 30);

interface Sample {
  ms: number;
  rssKb: number;
}

// Asynchronous on purpose: the agent answering the ADDs runs in this process's event loop.
function once(cmd: string[], env: Record<string, string>, stdin: string): Promise<Sample> {
  const start = process.hrtime.bigint();
  return new Promise<Sample>((resolve, reject) => {
    // GNU time reports the child's peak RSS on stderr (last line), after the plugin's logs.
    const child = spawn("/usr/bin/time", ["-f", "%M", ...cmd], { env, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code !== 0) reject(new Error(`${cmd.join(" ")} exited ${code}: ${out} ${err}`));
      else resolve({ ms, rssKb: Number(err.trim().split("\n").at(-1)) });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(stdin);
  });
}

function summary(name: string, samples: Sample[]): string {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const pick = (q: number): string => (ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? 0).toFixed(1);
  const rss = Math.max(...samples.map((s) => s.rssKb)) / 1024;
  return `${name.padEnd(44)} p50 ${pick(0.5)} ms  p95 ${pick(0.95)} ms  max RSS ${rss.toFixed(1)} MB`;
}

async function measure(cmd: string[], env: Record<string, string>, stdin: string): Promise<Sample[]> {
  await once(cmd, env, stdin); // warm the page cache
  const out: Sample[] = [];
  for (let i = 0; i < N; i++) out.push(await once(cmd, env, stdin));
  return out;
}

async function main(): Promise<void> {
  if (!existsSync(EXE)) throw new Error(`${EXE} missing: run npm run build:cni`);
  const runDir = mkdtempSync(join(tmpdir(), "cni-bench-"));
  const server = await startPluginEventServer({
    runDir,
    handler: { onAdd: async () => ({ outcome: "enrolled" }), onDel: async () => undefined },
  });
  try {
    const conf = (ns: string): [Record<string, string>, string] => benchAddInvocation(runDir, ns);
    const [passEnv, passConf] = conf("kube-system");
    const [addEnv, addConf] = conf("shop");
    console.log(`ambient-cni start-up, ${N} runs each (${process.version}, ${EXE})`);
    console.log(summary("executable VERSION", await measure([EXE], { CNI_COMMAND: "VERSION" }, "")));
    console.log(summary("executable ADD pass-through (excluded ns)", await measure([EXE], passEnv, passConf)));
    console.log(summary("executable ADD -> agent POST /cmdadd", await measure([EXE], addEnv, addConf)));
    if (existsSync(BUNDLE)) {
      console.log(summary("node bundle.cjs ADD -> agent (no SEA)", await measure([process.execPath, BUNDLE], addEnv, addConf)));
    }
    console.log(summary("node -e 0 (baseline)", await measure([process.execPath, "-e", "0"], {}, "")));
  } finally {
    await server.close();
    rmSync(runDir, { recursive: true, force: true });
  }
}

await main();
