import { spawn } from "node:child_process";
import { RedirectCommandError } from "./errors.js";

// The seam between redirection logic and the kernel: unit tests pass a fake, the agent and the
// privileged tests pass a runner bound to one pod netns.

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandRunner {
  /** Where commands run, for error messages: a netns path, or "host". */
  readonly where: string;
  run(cmd: string, args: readonly string[], input?: string): Promise<CommandResult>;
}

const DEFAULT_TIMEOUT_MS = 30_000;

function spawnCollect(cmd: string, args: readonly string[], input: string | undefined, timeoutMs: number): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], timeout: timeoutMs, killSignal: "SIGKILL" });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.stdin.on("error", () => undefined); // the command may exit before reading its input
    child.on("error", (e) => resolve({ code: 127, stdout: "", stderr: `${cmd}: ${e.message}` }));
    child.on("close", (code, signal) => {
      const stderr = Buffer.concat(err).toString() + (signal ? `\nkilled by ${signal}${signal === "SIGKILL" ? ` (timeout ${timeoutMs} ms?)` : ""}` : "");
      resolve({ code: code ?? 128, stdout: Buffer.concat(out).toString(), stderr });
    });
    child.stdin.end(input ?? "");
  });
}

/** Runs commands inside the network namespace at `netnsPath` (a /var/run/netns file or /proc/<pid>/ns/net). */
export function netnsRunner(netnsPath: string, opts: { timeoutMs?: number } = {}): CommandRunner {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return {
    where: netnsPath,
    run: (cmd, args, input) => spawnCollect("nsenter", [`--net=${netnsPath}`, "--", cmd, ...args], input, timeoutMs),
  };
}

/** Runs commands in the calling process' own namespaces (used to detect the iptables backend). */
export function hostRunner(opts: { timeoutMs?: number } = {}): CommandRunner {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return { where: "host", run: (cmd, args, input) => spawnCollect(cmd, args, input, timeoutMs) };
}

export function commandLine(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].join(" ");
}

/** Runs and throws a RedirectCommandError (netns, command, stderr) unless it exits 0. */
export async function mustRun(runner: CommandRunner, cmd: string, args: readonly string[], input?: string): Promise<CommandResult> {
  const res = await runner.run(cmd, args, input);
  if (res.code !== 0) throw new RedirectCommandError(runner.where, commandLine(cmd, args), res.code, res.stderr);
  return res;
}
