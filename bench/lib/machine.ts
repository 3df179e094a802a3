import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { cpus, loadavg, release, totalmem } from "node:os";
import type { MachineInfo } from "./report.js";

async function osName(): Promise<string> {
  try {
    const text = await readFile("/etc/os-release", "utf8");
    return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(text)?.[1] ?? "unknown";
  } catch {
    return "unknown";
  }
}

export function loadAverage(): [number, number, number] {
  const [a, b, c] = loadavg();
  return [a ?? 0, b ?? 0, c ?? 0];
}

export async function describeMachine(): Promise<MachineInfo> {
  const c = cpus();
  return {
    cpuModel: c[0]?.model.trim() ?? "unknown",
    cores: c.length,
    kernel: release(),
    node: process.version,
    os: await osName(),
    memTotalMiB: Math.round(totalmem() / 1024 / 1024),
    loadAvgStart: loadAverage(),
  };
}

/** The commit measured, marked when src/ or native/ differ from it (results then describe a work tree). */
export async function describeRevision(repo: string): Promise<string> {
  const git = (args: string[]): Promise<string> =>
    new Promise((resolve) => execFile("git", ["-C", repo, ...args], { timeout: 10_000 }, (err, out) => resolve(err ? "" : out.trim())));
  const head = await git(["rev-parse", "--short", "HEAD"]);
  if (head === "") return "unknown (not a git checkout)";
  const dirty = await git(["status", "--porcelain", "--", "src", "native", "cni-plugin"]);
  return dirty === "" ? head : `${head} + uncommitted changes in src/native/cni-plugin`;
}
