import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { pluginEntry } from "../../src/agent/install/entry.js";
import { startPluginLogServer } from "../../src/agent/pluginevent/log-server.js";
import { startPluginEventServer } from "../../src/agent/pluginevent/server.js";
import { killAndWait } from "../../test/harness/netns.js";
import { BenchError } from "./errors.js";
import { finish } from "./proc.js";
import { round, spread, type Spread } from "./stats.js";

// CNI ADD exec-to-exit: the built plugin executable, exec'd as a runtime does (CNI_* env,
// config on stdin: the entry the installer writes, so its default log level), POSTing to a
// plugin event server that is already up (warm agent) and answers at once, as in the CNI tests,
// with the agent's log socket up too (the plugin forwards its log lines there, the agent
// re-logs them: to a file here, synchronously as the agent writes stderr). The agent's own enrollment work (rules, ZDS Add→Ack)
// is measured by the other rows. The same ADDs run twice: on the machine as it is, then with
// every core held by a CPU-bound process at normal priority (the "loaded machine" of issue 20:
// the plugin, the agent and the load share the cores as on a node starting pods under load).

export const CNI_EXECUTABLE = join(import.meta.dirname, "..", "..", "cni-plugin", "ambient-cni");

/** The load of the loaded series: one busy-looping process per core, nice 0. */
export function cniLoadProcesses(): number {
  return availableParallelism();
}

/** What the load is, for notes: "2 CPU-bound processes (…) spin". */
export function cniLoadNote(): string {
  return `${cniLoadProcesses()} CPU-bound processes (one per core, \`node -e "for(;;);"\`, nice 0) spin`;
}

export interface CniAddResult extends Spread {
  /** The same ADDs with every core held by a CPU-bound process (cniLoadNote()). */
  loaded: Spread & { loadProcesses: number };
  /**
   * `node -e 0` exec to exit, each run right after an ADD (idle, then loaded): Node's own
   * start-up, the floor of any plugin executable built on Node, measured under the same load.
   */
  nodeStart: Spread & { loaded: Spread };
}

function addOnce(env: Record<string, string>, stdin: string): Promise<number> {
  const t = process.hrtime.bigint();
  const child = spawn(CNI_EXECUTABLE, [], { env, stdio: ["pipe", "pipe", "pipe"] });
  child.stdin.on("error", () => undefined);
  child.stdin.end(stdin);
  return finish(child, "ambient-cni ADD", 10_000).then((r) => {
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    if (r.code !== 0) throw new BenchError(`ambient-cni ADD exited ${r.code}: ${(r.stdout + r.stderr).slice(0, 300)}`);
    return ms;
  });
}

/**
 * `node -e 0` (this Node binary), exec to exit, ms, with the plugin's environment: this process's
 * own may carry start-up work (NODE_EXTRA_CA_CERTS alone costs tens of ms) that a runtime's
 * exec of the plugin does not.
 */
function nodeStartOnce(env: Record<string, string>): Promise<number> {
  const t = process.hrtime.bigint();
  const child = spawn(process.execPath, ["-e", "0"], { env, stdio: ["ignore", "pipe", "pipe"] });
  return finish(child, "node -e 0", 10_000).then((r) => {
    if (r.code !== 0) throw new BenchError(`node -e 0 exited ${r.code}: ${r.stderr.slice(0, 300)}`);
    return Number(process.hrtime.bigint() - t) / 1e6;
  });
}

function rounded(samples: readonly number[]): Spread {
  const s = spread(samples);
  return { count: s.count, p50: round(s.p50, 2), p90: round(s.p90, 2), p99: round(s.p99, 2), max: round(s.max, 2), mean: round(s.mean, 2) };
}

/** Starts `n` busy loops and resolves once each has printed that it spins. */
export async function startLoad(n: number): Promise<ChildProcess[]> {
  const hogs: ChildProcess[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const hog = spawn(process.execPath, ["-e", 'process.stdout.write("spinning\\n"); for (;;);'], { stdio: ["ignore", "pipe", "ignore"] });
      hogs.push(hog);
      await new Promise<void>((resolve, reject) => {
        hog.once("error", reject);
        hog.once("exit", (code) => reject(new BenchError(`load process exited (${code}) before it spun`)));
        hog.stdout?.once("data", () => resolve());
      });
    }
    return hogs;
  } catch (err) {
    await stopLoad(hogs);
    throw err;
  }
}

export async function stopLoad(hogs: readonly ChildProcess[]): Promise<void> {
  await Promise.all(hogs.map((h) => killAndWait(h)));
}

export async function cniAdd(runs: number): Promise<CniAddResult> {
  if (!existsSync(CNI_EXECUTABLE)) throw new BenchError(`${CNI_EXECUTABLE} is missing: run npm run build:cni`);
  const runDir = await mkdtemp(join(tmpdir(), "bench-cni-"));
  let adds = 0;
  const agentLog = pino({ level: "info" }, pino.destination({ dest: join(runDir, "agent.log"), sync: true }));
  const logServer = await startPluginLogServer(runDir, agentLog);
  const server = await startPluginEventServer({
    runDir,
    handler: {
      onAdd: async () => {
        adds++;
        return { outcome: "enrolled" };
      },
      onDel: async () => undefined,
    },
  });
  try {
    const [env, conf] = benchAddInvocation(runDir, "shop");
    // Each ADD is followed by a `node -e 0`, so both see the same moments of the load.
    const series = async (): Promise<{ add: number[]; node: number[] }> => {
      const add: number[] = [];
      const node: number[] = [];
      for (let i = 0; i < runs; i++) {
        add.push(await addOnce(env, conf));
        node.push(await nodeStartOnce(env));
      }
      return { add, node };
    };
    // Page cache and agent warm.
    for (let i = 0; i < 3; i++) {
      await addOnce(env, conf);
      await nodeStartOnce(env);
    }
    const idle = await series();
    const loadProcesses = cniLoadProcesses();
    const hogs = await startLoad(loadProcesses);
    let loaded: { add: number[]; node: number[] };
    try {
      loaded = await series();
    } finally {
      await stopLoad(hogs);
    }
    if (adds !== 2 * runs + 3) throw new BenchError(`the agent saw ${adds} ADDs for ${2 * runs + 3} plugin runs`);
    return { ...rounded(idle.add), loaded: { ...rounded(loaded.add), loadProcesses }, nodeStart: { ...rounded(idle.node), loaded: rounded(loaded.node) } };
  } finally {
    await server.close();
    await logServer.close();
    await rm(runDir, { recursive: true, force: true });
  }
}

/** Env and stdin config of an ADD as a runtime would run it, for the pod `p` in `ns`. */
export function benchAddInvocation(runDir: string, ns: string): [Record<string, string>, string] {
  return [
    {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "bench",
      CNI_NETNS: "/var/run/netns/bench",
      CNI_IFNAME: "eth0",
      CNI_PATH: "/opt/cni/bin",
      CNI_ARGS: `K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=p`,
    },
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "bench",
      ...pluginEntry({ runDir }),
      prevResult: { cniVersion: "1.0.0", ips: [{ interface: 0, address: "10.0.0.5/24", gateway: "10.0.0.1" }] },
    }),
  ];
}
