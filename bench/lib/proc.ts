import type { ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { waitForLine as waitForChildLine } from "../../test/harness/child-output.js";
import { killAndWait } from "../../test/harness/netns.js";
import type { Topology } from "../../test/harness/topology.js";
import { BenchError } from "./errors.js";

// Child processes of the bench: always inside a topology netns (tracked by the topology, so
// destroy kills them), always bounded by a timeout.

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Collects a child's output until it exits; kills it (and rejects) after `timeoutMs`. */
export function finish(child: ChildProcess, what: string, timeoutMs: number): Promise<Finished> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      void killAndWait(child).then(() => reject(new BenchError(`${what} did not finish within ${Math.round(timeoutMs / 1000)} s: ${stderr.slice(-300)}`)));
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new BenchError(`${what} could not start: ${err.message}`, { cause: err }));
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs a command to completion inside a topology netns; non-zero exit is an error. */
export async function runIn(topo: Topology, ns: string, what: string, cmd: string, args: string[], timeoutMs: number): Promise<Finished> {
  const r = await finish(topo.spawn(ns, cmd, args), what, timeoutMs);
  if (r.code !== 0) throw new BenchError(`${what} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-400)}`);
  return r;
}

/** Waits until a long-running child prints `line` on stdout (or fails/ends/times out). */
export async function waitForLine(child: ChildProcess, line: string, what: string, timeoutMs: number): Promise<void> {
  try {
    await waitForChildLine(child, line, timeoutMs);
  } catch (err) {
    throw new BenchError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Polls `ss` in a netns until something listens on `port`. */
export async function waitListening(topo: Topology, ns: string, port: number, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { stdout } = await topo.exec(ns, "ss", ["-Htln", `sport = :${port}`]);
    if (stdout.trim() !== "") return;
    if (Date.now() > deadline) throw new BenchError(`${what} is not listening on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resident set size of a process, MiB (VmRSS: all threads, so every ztunnel worker counts). */
export async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (m === null) throw new BenchError(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

/** Soft RLIMIT_NOFILE of a running process (/proc/<pid>/limits). */
export async function nofileLimit(pid: number): Promise<number> {
  const limits = await readFile(`/proc/${pid}/limits`, "utf8");
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits);
  if (m === null) throw new BenchError(`no "Max open files" line in /proc/${pid}/limits`);
  return m[1] === "unlimited" ? Number.POSITIVE_INFINITY : Number(m[1]);
}
