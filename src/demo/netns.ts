import { execFile, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

// Process and netns helpers shared by the local demo and the tests (test/harness/netns.ts
// re-exports them): every command runs without a shell.

/**
 * Short random id for one test run; netns and link names carry it so parallel or crashed
 * runs never collide (link names are limited to 15 characters).
 */
export function runId(): string {
  return randomBytes(3).toString("hex");
}

export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** Runs a command (no shell) and returns its output; rejects with stderr in the message. */
export async function run(cmd: string, args: string[], opts: { input?: string } = {}): Promise<ExecResult> {
  if (opts.input !== undefined) {
    return await new Promise<ExecResult>((resolve, reject) => {
      const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("error", reject);
      child.on("close", (code) => {
        if (code === 0) resolve({ stdout, stderr });
        else reject(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${stderr.trim()}`));
      });
      child.stdin.end(opts.input);
    });
  }
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { maxBuffer: 64 * 1024 * 1024 });
    return { stdout, stderr };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

/** Runs a command inside a named netns (`ip netns exec`). */
export async function execIn(ns: string, cmd: string, args: string[], opts: { input?: string } = {}): Promise<ExecResult> {
  return await run("ip", ["netns", "exec", ns, cmd, ...args], opts);
}

/** Spawns a long-running process inside a named netns; the caller must kill it before deleting the netns. */
export function spawnIn(ns: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  return spawn("ip", ["netns", "exec", ns, cmd, ...args], { stdio: "pipe", ...opts });
}

export function netnsPath(ns: string): string {
  return `/var/run/netns/${ns}`;
}

/** Creates a named netns with `lo` up. */
export async function createNetns(ns: string): Promise<string> {
  await run("ip", ["netns", "add", ns]);
  await execIn(ns, "ip", ["link", "set", "lo", "up"]);
  return netnsPath(ns);
}

/** Deletes a named netns; missing is fine (cleanup must be idempotent). */
export async function deleteNetns(ns: string): Promise<void> {
  try {
    await run("ip", ["netns", "del", ns]);
  } catch (err) {
    if (!/No such file|Cannot remove|does not exist/i.test(String(err))) throw err;
  }
}

/** Kills a child process and waits for it to be gone (an fd it holds keeps a netns alive). */
export async function killAndWait(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}
