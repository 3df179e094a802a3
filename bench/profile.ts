// `npm run bench:profile`: where the ztunnels' CPU time goes, as a file small enough to commit.
// Runs each asked-for row of `npm run bench` on its own (one round) with every ztunnel under
// `node --cpu-prof` (BENCH_ZTUNNEL_NODE_ARGS, see lib/profiling.ts), then reduces the V8
// profiles (one per thread) to self time per category and the top functions per thread:
// <out>/profile-<time>/summary.md and summary.json, plus each row's results.md as <row>-run.md.
// The raw .cpuprofile files (hundreds of KiB to MiB per thread) stay out of it unless --keep-raw.
// Needs root, like the bench. Profiled runs are slower: the figures of these runs are not results.
import { spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { errorMessage } from "../src/shared/errors.js";
import { combine, parseCpuProfile, profileFileIds, renderCategories, renderTop, summarize, type ThreadSummary } from "./lib/cpuprofile.js";
import { BenchError, BenchUsageError } from "./lib/errors.js";
import { describeMachine, describeRevision } from "./lib/machine.js";
import { ROWS, type Row } from "./lib/options.js";
import { ZTUNNEL_NODE_ARGS_ENV } from "./lib/profiling.js";
import { optionsOrExit } from "./lib/start.js";

const REPO = join(import.meta.dirname, "..", "..");
const USAGE = `usage: npm run bench:profile -- [--only <row,...>] [--paths <path,...>] [--duration <s>] [--top <n>] [--out <dir>] [--keep-raw <dir>]
  --only      bench rows to profile, each in its own run (default throughput,latency,connrate)
  --paths     passed to the bench (e.g. hbone: only the HBONE path runs, the ztunnels see nothing else)
  --duration  seconds per throughput / connection-rate run (default 5)
  --top       functions listed per thread (default 15)
  --out       parent of profile-<time>/ (default bench/results)
  --keep-raw  also copy the .cpuprofile files there (do not commit them: MiBs)`;

interface ProfileOptions {
  rows: Row[];
  paths: string | undefined;
  durationS: number;
  top: number;
  outDir: string;
  keepRaw: string | undefined;
}

function parse(argv: readonly string[]): ProfileOptions {
  const o: ProfileOptions = { rows: ["throughput", "latency", "connrate"], paths: undefined, durationS: 5, top: 15, outDir: join(REPO, "bench", "results"), keepRaw: undefined };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined || v === "") throw new BenchUsageError(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    if (flag === "--help" || flag === "-h") throw new BenchUsageError(USAGE);
    else if (flag === "--only") {
      o.rows = value().split(",").map((s) => s.trim()).filter((s) => s !== "") as Row[];
      for (const r of o.rows) if (!(ROWS as readonly string[]).includes(r)) throw new BenchUsageError(`--only: unknown row "${r}" (rows: ${ROWS.join(", ")})`);
    } else if (flag === "--paths") o.paths = value();
    else if (flag === "--duration") o.durationS = Number(value());
    else if (flag === "--top") o.top = Number(value());
    else if (flag === "--out") o.outDir = value();
    else if (flag === "--keep-raw") o.keepRaw = value();
    else throw new BenchUsageError(`unknown argument "${flag}"\n${USAGE}`);
  }
  if (o.rows.length === 0) throw new BenchUsageError(`--only needs at least one row\n${USAGE}`);
  if (!Number.isFinite(o.durationS) || o.durationS < 1 || o.durationS > 600) throw new BenchUsageError("--duration must be a number of seconds in 1..600");
  if (!Number.isInteger(o.top) || o.top < 1 || o.top > 100) throw new BenchUsageError("--top must be a whole number in 1..100");
  return o;
}

function log(s: string): void {
  process.stderr.write(`[bench:profile ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
}

/** One bench run of `row` with profiled ztunnels; resolves with its run directory. */
function benchRun(row: Row, o: ProfileOptions, profDir: string, runOut: string): Promise<string> {
  const args = [join(REPO, "dist", "bench", "run.js"), "--only", row, "--rounds", "1", "--duration", String(o.durationS), "--out", runOut, ...(o.paths !== undefined ? ["--paths", o.paths] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: REPO, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, [ZTUNNEL_NODE_ARGS_ENV]: `--cpu-prof --cpu-prof-dir=${profDir}` } });
    child.stderr.on("data", (d: Buffer) => process.stderr.write(d));
    child.once("error", (e) => reject(new BenchError(`bench run for ${row} could not start: ${e.message}`)));
    child.once("close", async (code) => {
      if (code !== 0) return reject(new BenchError(`bench run for ${row} exited ${code}`));
      const dirs = (await readdir(runOut, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
      if (dirs.length === 0) return reject(new BenchError(`bench run for ${row} wrote no results`));
      resolve(join(runOut, dirs.at(-1)!));
    });
  });
}

interface RowProfile {
  row: Row;
  /** Only the samples taken while the row measured (pod-to-pod rows); else the whole process life. */
  measuredOnly: boolean;
  /** Both ztunnels' threads together, then each thread. */
  all: Omit<ThreadSummary, "top">;
  threads: ThreadSummary[];
}

async function summarizeRow(row: Row, profDir: string, runDir: string, top: number): Promise<RowProfile> {
  const results = JSON.parse(await readFile(join(runDir, "results.json"), "utf8")) as { details?: { datapath?: { ztunnelPids?: Array<number | null> }; roundsWindowUs?: [number, number] } };
  const pids = results.details?.datapath?.ztunnelPids ?? [];
  const window = results.details?.roundsWindowUs;
  const files = (await readdir(profDir)).filter((f) => profileFileIds(f) !== undefined).sort();
  if (files.length === 0) throw new BenchError(`no .cpuprofile written for ${row} (the ztunnels must exit cleanly; see ${runDir}/results.md)`);
  const threads: ThreadSummary[] = [];
  for (const file of files) {
    const ids = profileFileIds(file)!;
    const node = pids.indexOf(ids.pid);
    const who = node >= 0 ? `node${node} ztunnel` : `ztunnel pid ${ids.pid}`;
    const label = `${who}, ${ids.thread === 0 ? "main thread" : `worker thread ${ids.thread}`}`;
    threads.push(summarize(parseCpuProfile(await readFile(join(profDir, file), "utf8"), file), label, top, window));
  }
  threads.sort((a, b) => a.label.localeCompare(b.label));
  return { row, measuredOnly: window !== undefined, all: combine("both ztunnels, every thread", threads), threads };
}

function renderSummary(profiles: readonly RowProfile[], header: string[]): string {
  const out = [...header];
  for (const p of profiles) {
    const span = p.measuredOnly ? "samples taken while the row measured (start-up left out)" : "the processes' whole life, start-up included";
    out.push(`## ${p.row}`, "", `Both ztunnels, every thread, ${span}: ${p.all.busyMs} ms busy (self time by category, share of busy time).`, "", renderCategories(p.all), "");
    for (const t of p.threads) {
      if (t.busyMs === 0) continue;
      out.push(`### ${t.label}: ${t.busyMs} ms busy in ${t.wallMs} ms`, "", renderCategories(t), "", renderTop(t), "");
    }
  }
  return out.join("\n");
}

async function main(): Promise<number> {
  const o = optionsOrExit("bench:profile", () => parse(process.argv.slice(2)));
  if (typeof o === "number") return o;
  const started = new Date();
  const stamp = started.toISOString().replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
  const work = await mkdtemp(join(tmpdir(), "bench-profile-"));
  const out = join(o.outDir, `profile-${stamp}`);
  try {
    const machine = await describeMachine();
    const revision = await describeRevision(REPO);
    await mkdir(out, { recursive: true });
    const profiles: RowProfile[] = [];
    for (const row of o.rows) {
      log(`${row}: bench run with --cpu-prof ztunnels`);
      const profDir = join(work, row, "prof");
      await mkdir(profDir, { recursive: true });
      const runDir = await benchRun(row, o, profDir, join(work, row, "run"));
      profiles.push(await summarizeRow(row, profDir, runDir, o.top));
      await copyFile(join(runDir, "results.md"), join(out, `${row}-run.md`));
      if (o.keepRaw !== undefined) {
        const keep = join(o.keepRaw, `profile-${stamp}`, row);
        await mkdir(keep, { recursive: true });
        for (const f of await readdir(profDir)) await copyFile(join(profDir, f), join(keep, f));
        log(`${row}: raw profiles in ${keep}`);
      }
    }
    const command = `npm run bench:profile -- --only ${o.rows.join(",")}${o.paths !== undefined ? ` --paths ${o.paths}` : ""} --duration ${o.durationS} --top ${o.top}`;
    const header = [
      `# ztunnel CPU profiles ${started.toISOString()}`,
      "",
      `Command: \`${command}\` (code at ${revision}). Machine: ${machine.cpuModel}, ${machine.cores} cores, kernel ${machine.kernel}, Node ${machine.node}; load average at start ${machine.loadAvgStart.map((x) => x.toFixed(2)).join(" / ")}.`,
      "",
      "Each row ran alone (`npm run bench -- --only <row> --rounds 1`) with both ztunnels under `node --cpu-prof` (1 ms sampling, one profile per thread); `<row>-run.md` is that run's report (profiled: slower than an unprofiled run, so its figures are not results).",
      "Self time: a sample's time goes to the function on top of the stack; percentages are of the thread's busy time (its samples less `(idle)`).",
      "Work done in C++ under a JS call is charged to that call (TLS encryption happens inside `writev` on a TLS socket); work that starts in libuv with no JS on the stack (socket reads and TLS decryption before the JS callback, V8 compilation) is `(program)`.",
      "",
    ];
    await writeFile(join(out, "summary.md"), renderSummary(profiles, header));
    await writeFile(join(out, "summary.json"), `${JSON.stringify({ startedAt: started.toISOString(), revision, command, machine, rows: profiles }, null, 2)}\n`);
    log(`summary in ${out}/summary.md`);
    return 0;
  } catch (err) {
    log(errorMessage(err));
    return 1;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

process.exitCode = await main();
