import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync, readFileSync } from "node:fs";

// The node processes (agent, ztunnel) run detached with their output in log files, so a kept
// run outlives the demo process and a Ctrl-C in the terminal reaches only the demo, which then
// stops them in order.

export interface NodeProcess {
  what: string;
  node: number;
  pid: number;
  log: string;
  child: ChildProcess | undefined;
}

/** `node ...nodeArgv` (this Node binary; nodeArgv ends with the script) inside netns `ns`. */
export function spawnInNetns(ns: string, what: string, node: number, nodeArgv: readonly string[], env: Record<string, string>, log: string): NodeProcess {
  const fd = openSync(log, "a");
  try {
    // `ip netns exec` execs the command in place: the pid is the node process itself.
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, ...nodeArgv], {
      env: { ...process.env, ...env },
      stdio: ["ignore", fd, fd],
      detached: true,
    });
    if (child.pid === undefined) throw new Error(`could not start ${what} on node ${node}`);
    child.unref();
    return { what, node, pid: child.pid, log, child };
  } finally {
    closeSync(fd);
  }
}

/** Start time of a process (clock ticks since boot, field 22 of /proc/<pid>/stat); guards against pid reuse. */
export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs = 3_000): Promise<void> {
  const signal = (s: NodeJS.Signals): void => {
    try {
      process.kill(pid, s);
    } catch {
      // already gone
    }
  };
  if (!isAlive(pid)) return;
  signal("SIGTERM");
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  if (isAlive(pid)) signal("SIGKILL");
  const hard = Date.now() + 5_000;
  while (isAlive(pid) && Date.now() < hard) await new Promise((r) => setTimeout(r, 25));
}

/** JSON log lines of a process's log file whose scope is `scope`. */
export function logRecords(log: string, scope: string): Array<Record<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(log, "utf8");
  } catch {
    return [];
  }
  const out: Array<Record<string, unknown>> = [];
  for (const line of text.split("\n")) {
    if (!line.includes(`"scope":"${scope}"`)) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial last line
    }
  }
  return out;
}

export function tail(log: string, lines = 20): string {
  try {
    return readFileSync(log, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}
