// Start-up cost of the CNI plugin executable: wall time per invocation (the runtime waits for
// it on every pod start) and peak RSS, for VERSION, a pass-through ADD (excluded namespace)
// and a full ADD against a local agent, next to `node bundle.cjs` (no SEA, no code cache) and
// `node -e 0` (Node's own start-up, the floor). Runs are interleaved round-robin across the
// rows, so load that comes and goes on a shared machine hits every row alike. Other builds of
// the executable given as arguments get their own ADD row (before/after comparisons). With
// --load, one CPU-bound process per core spins during the runs (the cni-add row's loaded series).
//   npm run build && npm run build:cni && node dist/bench/cni-startup.js [--load] [iterations] [other-exe...]
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..", "..");
const EXE = join(ROOT, "dist", "cni-plugin", "ambient-cni");
const BUNDLE = join(ROOT, "dist", "cni-plugin", "build", "ambient-cni.cjs");
const LOAD = process.argv.includes("--load");
const ARGS = process.argv.slice(2).filter((a) => a !== "--load");
const N = Number(ARGS[0] ?? 30);
const OTHERS = ARGS.slice(1);

interface Sample {
  ms: number;
  rssKb: number;
}

interface Row {
  name: string;
  cmd: string[];
  env: Record<string, string>;
  stdin: string;
  samples: Sample[];
}

// Asynchronous on purpose: the agent answering the ADDs runs in this process's event loop.
function once(row: Row): Promise<Sample> {
  const start = process.hrtime.bigint();
  return new Promise<Sample>((resolve, reject) => {
    // GNU time reports the child's peak RSS on stderr (last line), after the plugin's logs.
    const child = spawn("/usr/bin/time", ["-f", "%M", ...row.cmd], { env: row.env, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code !== 0) reject(new Error(`${row.cmd.join(" ")} exited ${code}: ${out} ${err}`));
      else resolve({ ms, rssKb: Number(err.trim().split("\n").at(-1)) });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(row.stdin);
  });
}

function summary(row: Row): string {
  const ms = row.samples.map((s) => s.ms).sort((a, b) => a - b);
  const pick = (q: number): string => (ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? 0).toFixed(1);
  const rss = Math.max(...row.samples.map((s) => s.rssKb)) / 1024;
  return `${row.name.padEnd(44)} p50 ${pick(0.5)} ms  p90 ${pick(0.9)} ms  p99 ${pick(0.99)} ms  max RSS ${rss.toFixed(1)} MB`;
}

async function main(): Promise<void> {
  if (!existsSync(EXE)) throw new Error(`${EXE} missing: run npm run build:cni`);
  // The agent's per-ADD info lines would bury the table: quiet them before the logger loads.
  process.env.LOG_LEVEL ??= "warn";
  const { startPluginEventServer } = await import("../src/agent/pluginevent/server.js");
  const { benchAddInvocation, cniLoadNote, cniLoadProcesses, startLoad, stopLoad } = await import("./lib/cni.js");
  const runDir = mkdtempSync(join(tmpdir(), "cni-bench-"));
  const server = await startPluginEventServer({
    runDir,
    handler: { onAdd: async () => ({ outcome: "enrolled" }), onDel: async () => undefined },
  });
  try {
    const [passEnv, passConf] = benchAddInvocation(runDir, "kube-system");
    const [addEnv, addConf] = benchAddInvocation(runDir, "shop");
    const row = (name: string, cmd: string[], env: Record<string, string>, stdin: string): Row => ({ name, cmd, env, stdin, samples: [] });
    const rows: Row[] = [
      row("executable VERSION", [EXE], { CNI_COMMAND: "VERSION" }, ""),
      row("executable ADD pass-through (excluded ns)", [EXE], passEnv, passConf),
      row("executable ADD -> agent POST /cmdadd", [EXE], addEnv, addConf),
      ...OTHERS.map((exe) => row(`${exe} ADD -> agent`, [exe], addEnv, addConf)),
    ];
    if (existsSync(BUNDLE)) rows.push(row("node bundle.cjs ADD -> agent (no SEA)", [process.execPath, BUNDLE], addEnv, addConf));
    rows.push(row("node -e 0 (Node's own start-up)", [process.execPath, "-e", "0"], {}, ""));
    console.log(`ambient-cni start-up, ${N} interleaved runs per row (${process.version}, ${EXE})${LOAD ? `, while ${cniLoadNote()}` : ""}`);
    for (const r of rows) await once(r); // page cache and agent warm
    const hogs = LOAD ? await startLoad(cniLoadProcesses()) : [];
    try {
      for (let i = 0; i < N; i++) for (const r of rows) r.samples.push(await once(r));
    } finally {
      await stopLoad(hogs);
    }
    for (const r of rows) console.log(summary(r));
  } finally {
    await server.close();
    rmSync(runDir, { recursive: true, force: true });
  }
}

await main();
