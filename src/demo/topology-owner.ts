import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { deleteNetns, run, type ExecResult } from "./netns.js";
import { isAlive, startTimeOf } from "./processes.js";

// Who owns a topology's netns, and the sweep that removes those of crashed runs: each topology
// records its process (pid + start time) before it creates anything.

/** Default prefix of every netns a Topology creates; `cleanupStale` only ever touches this prefix. */
export const TOPOLOGY_PREFIX = "a-";

/** Where each live topology records its owner, so a later run can tell crashed runs from live ones. */
export const TOPOLOGY_STATE_DIR = "/run/ambient-test-topology";

export interface OwnerRecord {
  id: string;
  pid: number;
  /** Process start time (clock ticks since boot) guards against pid reuse. */
  startTime: string;
  created: number;
}

export async function ignoreGone(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!/No such|Cannot find|does not exist|not found|Invalid argument|Cannot open/i.test(String(err))) throw err;
  }
}

/** Kills every process still inside a netns this harness created (children of tracked processes, leftovers). */
export async function killProcessesIn(ns: string): Promise<void> {
  let out: ExecResult;
  try {
    out = await run("ip", ["netns", "pids", ns]);
  } catch {
    return;
  }
  const pids = out.stdout
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number)
    .filter((pid) => pid !== process.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  // Wait until they are reaped so their fds no longer pin the netns.
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && pids.some((pid) => isAlive(pid))) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Writes the owner record of topology `id` (exclusive create). If the id's record exists, its
 * owner may have crashed: sweep, then try once more; still taken → a live process owns it.
 */
export async function writeOwnerRecord(stateDir: string, prefix: string, id: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const rec: OwnerRecord = { id, pid: process.pid, startTime: startTimeOf(process.pid) ?? "", created: Date.now() };
  const path = join(stateDir, `${id}.json`);
  const write = (): Promise<void> => writeFile(path, JSON.stringify(rec), { flag: "wx" });
  try {
    await write();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    await cleanupStale(prefix, stateDir);
    await write().catch(() => {
      throw new Error(`topology id ${id} is already in use by a live process (record in ${stateDir})`);
    });
  }
}

export async function removeOwnerRecord(stateDir: string, id: string): Promise<void> {
  await rm(join(stateDir, `${id}.json`), { force: true });
}

/**
 * Safety net for crashed runs: deletes netns named `<prefix><id>-...` whose owning process (from
 * TOPOLOGY_STATE_DIR) is gone. Live topologies (of this or a concurrent run) and netns without an
 * owner record (not ours) are left alone. Returns the netns it removed.
 */
export async function cleanupStale(prefix: string = TOPOLOGY_PREFIX, stateDir: string = TOPOLOGY_STATE_DIR): Promise<string[]> {
  let files: string[];
  try {
    files = await readdir(stateDir);
  } catch {
    return [];
  }
  const stale = new Set<string>();
  for (const f of files.filter((n) => n.endsWith(".json"))) {
    const path = join(stateDir, f);
    let rec: OwnerRecord;
    try {
      rec = JSON.parse(await readFile(path, "utf8")) as OwnerRecord;
    } catch {
      continue;
    }
    const alive = startTimeOf(rec.pid) === rec.startTime && rec.startTime !== "";
    if (!alive) stale.add(rec.id);
  }
  const { stdout } = await run("ip", ["netns", "list"]);
  const removed: string[] = [];
  for (const line of stdout.split("\n")) {
    const ns = line.split(" ")[0] ?? "";
    if (!ns.startsWith(prefix)) continue;
    const id = ns.slice(prefix.length).split("-")[0] ?? "";
    if (!stale.has(id)) continue;
    await killProcessesIn(ns);
    await deleteNetns(ns);
    removed.push(ns);
  }
  for (const id of stale) await rm(join(stateDir, `${id}.json`), { force: true });
  return removed;
}
