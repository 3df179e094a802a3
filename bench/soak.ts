// `npm run soak`: issue 16's soak (a benchmark, not a test). The 2-node demo mesh under mixed
// traffic (short connections and long transfers across and within nodes), a pod enrolled or
// removed through the CNI plugin every second, ztunnel's local config reloaded every 10 s with
// a Deny policy switched on and off; each ztunnel's RSS and fd count sampled. Verdict: RSS and
// fds flat within 10% after the warm-up, no failed connection that the policy did not deny,
// no failed churn step, and the policy really denied. Needs root and `npm run build:cni`.
// Output: <out>/soak-<time>/soak.{json,md}. Everything it creates is removed at the end, on
// failure and on Ctrl-C.
import { optionsOrExit } from "./lib/start.js";
import { mkdir, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { errorMessage } from "../src/shared/errors.js";
import { rootLogger } from "../src/shared/log.js";
import { BenchUsageError } from "./lib/errors.js";
import { describeMachine, describeRevision } from "./lib/machine.js";
import { buildMesh, soak, type SoakOptions, type SoakOutcome } from "./lib/soak-run.js";
import { flatness, type Flatness } from "./lib/soak-sampler.js";
import { Teardown } from "./lib/teardown.js";

const REPO = join(import.meta.dirname, "..", "..");
const FLAT_LIMIT_PERCENT = 10;
const USAGE = `usage: npm run soak -- [--minutes <m>] [--warmup-seconds <s>] [--sample-seconds <s>] [--out <dir>]
  --minutes          soak duration (default 10)
  --warmup-seconds   samples before this are not judged (default: 20% of the duration)
  --sample-seconds   RSS / fd sampling interval (default 5)
  --out              results directory (default bench/results)`;

rootLogger().level = "warn";

function log(s: string): void {
  process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
}

interface Options extends SoakOptions {
  warmupS: number;
  outDir: string;
}

function positive(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (!Number.isFinite(x) || x <= 0) throw new BenchUsageError(`--${name} wants a positive number, got "${v}"\n${USAGE}`);
  return x;
}

function parseOptions(argv: string[]): Options {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options: { minutes: { type: "string" }, "warmup-seconds": { type: "string" }, "sample-seconds": { type: "string" }, out: { type: "string" }, help: { type: "boolean" } } }).values;
  } catch (err) {
    throw new BenchUsageError(`${errorMessage(err)}\n${USAGE}`);
  }
  if (values.help === true) throw new BenchUsageError(USAGE);
  const durationS = Math.round(positive("minutes", values.minutes as string | undefined, 10) * 60);
  return {
    durationS,
    warmupS: positive("warmup-seconds", values["warmup-seconds"] as string | undefined, Math.round(durationS * 0.2)),
    sampleS: positive("sample-seconds", values["sample-seconds"] as string | undefined, 5),
    reloadS: 10,
    churnMs: 1_000,
    longBytes: 32 * 1024 * 1024,
    outDir: (values.out as string | undefined) ?? join(REPO, "bench", "results"),
  };
}

interface Verdict {
  pass: boolean;
  reasons: string[];
  flat: Flatness[];
}

function judge(o: SoakOutcome, opts: Options): Verdict {
  const reasons: string[] = [];
  const flat: Flatness[] = [];
  for (const node of [0, 1]) {
    for (const what of ["rssMiB", "fds"] as const) {
      const f = flatness(o.samples, node, what, opts.warmupS, FLAT_LIMIT_PERCENT);
      if (f === undefined) reasons.push(`node${node} ${what}: fewer than 4 samples after the ${opts.warmupS} s warm-up`);
      else {
        flat.push(f);
        if (!f.flat) reasons.push(`node${node} ${what} grew ${f.growthPercent}% (${f.early} → ${f.late}) after warm-up`);
      }
    }
  }
  const failed = o.flows.reduce((s, f) => s + f.failed, 0);
  if (failed > 0) reasons.push(`${failed} connection(s) failed that no policy denied`);
  if (o.flows.some((f) => f.ok === 0)) reasons.push(`flow(s) with no successful connection: ${o.flows.filter((f) => f.ok === 0).map((f) => f.flow).join(", ")}`);
  if (o.churn.failed > 0) reasons.push(`${o.churn.failed} CNI churn step(s) failed`);
  if (o.policyOnWindows > 0 && o.flows.reduce((s, f) => s + f.denied, 0) === 0) reasons.push("the Deny policy was on but denied nothing");
  return { pass: reasons.length === 0, reasons, flat };
}

function markdown(o: SoakOutcome, v: Verdict, opts: Options, startedAt: string, revision: string): string {
  const lines = [
    `# Soak (issue 16): ${v.pass ? "PASS" : "FAIL"}`,
    "",
    `Started ${startedAt}, revision ${revision}, ${opts.durationS} s (warm-up ${opts.warmupS} s, samples every ${opts.sampleS} s), pod churn every ${opts.churnMs} ms, local-config reload every ${opts.reloadS} s (${o.reloads} reloads, ${o.policyOnWindows} Deny-policy windows).`,
    "",
    ...(v.reasons.length > 0 ? ["## Why it failed", "", ...v.reasons.map((r) => `- ${r}`), ""] : []),
    `## Resources after warm-up (flat = last-quarter median within ${FLAT_LIMIT_PERCENT}% of the first-quarter median)`,
    "",
    "| node | figure | first quarter | last quarter | growth | min | max | samples | flat |",
    "|---|---|---|---|---|---|---|---|---|",
    ...v.flat.map((f) => `| node${f.node} | ${f.what} | ${f.early} | ${f.late} | ${f.growthPercent}% | ${f.min} | ${f.max} | ${f.samples} | ${f.flat ? "yes" : "NO"} |`),
    "",
    "## Connections",
    "",
    "| flow | kind | ok | denied by policy | failed (unexplained) |",
    "|---|---|---|---|---|",
    ...o.flows.map((f) => `| ${f.flow} | ${f.kind} | ${f.ok} | ${f.denied} | ${f.failed} |`),
    "",
    `CNI churn: ${o.churn.ok} steps ok, ${o.churn.failed} failed.`,
    ...[...o.flows.flatMap((f) => f.failures), ...o.churn.failures].map((x) => `- ${x}`),
    "",
  ];
  return lines.join("\n");
}

async function main(): Promise<number> {
  const opts = optionsOrExit("soak", () => parseOptions(process.argv.slice(2)));
  if (typeof opts === "number") return opts;
  const teardown = new Teardown();
  let interrupted = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log(`${signal}: stopping at the next step, then tearing down (again to exit at once)`);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
  const revision = await describeRevision(REPO);
  const machine = await describeMachine();
  let outcome: SoakOutcome;
  try {
    const { run, churnPods } = await buildMesh(teardown, log);
    if (interrupted) return 130;
    log(`soaking for ${opts.durationS} s`);
    outcome = await soak(run, churnPods, opts, () => interrupted, log);
  } catch (err) {
    log(`soak failed: ${errorMessage(err)}`);
    return 1;
  } finally {
    for (const e of await teardown.run()) log(`cleanup: ${e}`);
  }
  if (interrupted) return 130;
  const verdict = judge(outcome, opts);
  const dir = join(opts.outDir, `soak-${stamp}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "soak.json"), `${JSON.stringify({ startedAt: startedAt.toISOString(), revision, machine, options: opts, verdict, ...outcome }, null, 2)}\n`);
  const md = markdown(outcome, verdict, opts, startedAt.toISOString(), revision);
  await writeFile(join(dir, "soak.md"), md);
  process.stdout.write(md);
  log(`results in ${relative(process.cwd(), dir) || dir}`);
  return verdict.pass ? 0 : 1;
}

process.exitCode = await main();
