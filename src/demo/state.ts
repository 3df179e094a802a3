import { existsSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cleanupStale } from "./topology.js";
import { isAlive, startTimeOf, stopProcess } from "./processes.js";

// Where a run lives and how a kept run is found again (`--down`). The demo's netns carry their
// own prefix and owner records, so the test suite's stale sweep never touches a kept demo.

export const DEMO_ROOT = process.env.AMBIENT_DEMO_ROOT ?? "/run/ambient-demo";
export const DEMO_PREFIX = "ad-";
export const TOPOLOGY_DIR = join(DEMO_ROOT, "topology");
export const STATE_FILE = join(DEMO_ROOT, "current.json");

export interface KeptRun {
  id: string;
  runDir: string;
  context: string;
  /** Processes of the run; startTime guards against signalling a reused pid. */
  pids: Array<{ pid: number; startTime: string }>;
  netns: string[];
  kept: number;
}

export function readKept(): KeptRun | undefined {
  if (!existsSync(STATE_FILE)) return undefined;
  try {
    return JSON.parse(readFileSync(STATE_FILE, "utf8")) as KeptRun;
  } catch {
    return undefined;
  }
}

export async function writeKept(run: KeptRun): Promise<void> {
  await mkdir(DEMO_ROOT, { recursive: true, mode: 0o700 });
  await writeFile(STATE_FILE, JSON.stringify(run, null, 2));
}

function ours(p: { pid: number; startTime: string }): boolean {
  return isAlive(p.pid) && startTimeOf(p.pid) === p.startTime;
}

export function keptIsRunning(run: KeptRun): boolean {
  return run.pids.some(ours);
}

/** Tears down a kept run (or leftovers of a crashed one): processes, netns, files. Returns the netns removed. */
export async function tearDownKept(run: KeptRun | undefined): Promise<string[]> {
  if (run !== undefined) await Promise.all(run.pids.filter(ours).map((p) => stopProcess(p.pid)));
  // Owner records of finished demo processes mark their netns as stale: remove them all.
  const removed = await cleanupStale(DEMO_PREFIX, TOPOLOGY_DIR);
  if (run !== undefined) await rm(run.runDir, { recursive: true, force: true });
  await rm(STATE_FILE, { force: true });
  return removed;
}
