import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compareFigures, renderCompare } from "./lib/compare.js";
import { BenchError } from "./lib/errors.js";
import type { Figures } from "./lib/figures.js";

// `npm run bench -- --compare <git ref> [other options]`: builds <ref> in a temporary git
// worktree (sharing this checkout's node_modules; its own TypeScript build, native addon and,
// for the cni-add row, CNI plugin), then runs the bench round by round, baseline then this
// build, each with the same options and one round, and prints per-figure ratios. Both sides
// see the same slice of machine load, which is what makes a ratio mean something here.

export interface CompareOptions {
  readonly ref: string;
  /** Bench arguments for each side, without --compare, --rounds and --out. */
  readonly args: readonly string[];
  readonly rounds: number;
  readonly outDir: string;
  readonly needsCni: boolean;
}

type Log = (s: string) => void;

function run(cmd: string, args: readonly string[], cwd: string, what: string, timeoutMs: number, log?: Log): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
      if (log !== undefined) for (const line of d.toString().split("\n")) if (line.trim() !== "") log(`  ${line}`);
    });
    const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new BenchError(`${what}: could not start ${cmd}: ${e.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new BenchError(`${what} failed (${signal ?? `exit ${code}`}): ${err.trim().split("\n").slice(-5).join(" | ")}`));
    });
  });
}

/** A built checkout of `ref` in a temporary worktree; `remove` deletes it again. */
async function buildBaseline(repo: string, ref: string, needsCni: boolean, log: Log): Promise<{ dir: string; rev: string; remove: () => Promise<void> }> {
  const rev = (await run("git", ["rev-parse", "--verify", `${ref}^{commit}`], repo, `resolving ${ref}`, 10_000)).trim();
  const parent = await mkdtemp(join(tmpdir(), "bench-base-"));
  const dir = join(parent, "tree");
  const remove = async (): Promise<void> => {
    await run("git", ["worktree", "remove", "--force", dir], repo, "removing the baseline worktree", 60_000).catch(() => undefined);
    await rm(parent, { recursive: true, force: true });
  };
  try {
    log(`baseline ${ref} (${rev.slice(0, 12)}): worktree in ${dir}`);
    await run("git", ["worktree", "add", "--detach", dir, rev], repo, "creating the baseline worktree", 120_000);
    // Same dependencies as this checkout: a ref whose package-lock differs is measured with
    // today's packages (said in the report).
    await symlink(join(repo, "node_modules"), join(dir, "node_modules"), "dir");
    log("baseline: TypeScript build");
    await run(process.execPath, [join(repo, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"], dir, "baseline TypeScript build", 600_000);
    log("baseline: native addon");
    await run(process.execPath, [join(repo, "node_modules", "node-gyp", "bin", "node-gyp.js"), "rebuild", "--directory", "native", "--nodedir=/usr"], dir, "baseline native build", 600_000);
    if (needsCni) {
      log("baseline: CNI plugin");
      await run(process.execPath, [join(dir, "scripts", "build-cni-plugin.mjs")], dir, "baseline CNI plugin build", 600_000);
    }
    return { dir, rev, remove };
  } catch (err) {
    await remove();
    throw err;
  }
}

async function figuresOf(outDir: string): Promise<Figures> {
  const stamps = (await readdir(outDir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  const last = stamps.at(-1);
  if (last === undefined) throw new BenchError(`no results under ${outDir}`);
  const json = JSON.parse(await readFile(join(outDir, last, "results.json"), "utf8")) as { figures?: Figures };
  return json.figures ?? {};
}

export async function runCompare(repo: string, o: CompareOptions, log: Log): Promise<number> {
  const here = (await run("git", ["rev-parse", "HEAD"], repo, "resolving HEAD", 10_000)).trim();
  const dirty = (await run("git", ["status", "--porcelain", "--untracked-files=no"], repo, "git status", 10_000)).trim() !== "";
  const branchLabel = `${here.slice(0, 12)}${dirty ? " + uncommitted changes" : ""}`;
  if (!existsSync(join(repo, "dist", "bench", "run.js"))) throw new BenchError("this build is missing: run npm run build first");
  const base = await buildBaseline(repo, o.ref, o.needsCni, log);
  const stamp = new Date().toISOString().replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
  const out = join(o.outDir, `compare-${stamp}`);
  const baseRounds: Figures[] = [];
  const branchRounds: Figures[] = [];
  try {
    for (let r = 1; r <= o.rounds; r++) {
      for (const side of ["base", "branch"] as const) {
        const root = side === "base" ? base.dir : repo;
        const dir = join(out, `${side}-round${r}`);
        await mkdir(dir, { recursive: true });
        log(`round ${r} of ${o.rounds}: ${side}`);
        await run(process.execPath, [join(root, "dist", "bench", "run.js"), ...o.args, "--rounds", "1", "--out", dir], root, `${side} bench round ${r}`, 3 * 3600_000, log);
        (side === "base" ? baseRounds : branchRounds).push(await figuresOf(dir));
      }
    }
  } finally {
    await base.remove();
  }
  const rows = compareFigures(baseRounds, branchRounds);
  const md = renderCompare(rows, `${o.ref} (${base.rev.slice(0, 12)})`, branchLabel, o.rounds);
  await writeFile(join(out, "compare.md"), md);
  await writeFile(join(out, "compare.json"), `${JSON.stringify({ base: { ref: o.ref, rev: base.rev }, branch: { rev: here, dirty }, rounds: o.rounds, args: o.args, rows }, null, 2)}\n`);
  process.stdout.write(md);
  log(`comparison in ${out}`);
  return 0;
}
