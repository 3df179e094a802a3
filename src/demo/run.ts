import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { httpCall } from "../cli/http.js";
import { fetchDump } from "../cli/commands.js";
import type { NodeTarget } from "../cli/context.js";
import { enrollLocal } from "../cli/enroll.js";
import { errorMessage } from "../shared/errors.js";
import { ztunnelNodeArgv } from "../ztunnel/node-flags.js";
import { generateRoot } from "../ztunnel/tls/ca.js";
import { DemoError, PodApps } from "./apps.js";
import { demoPods, inventoryYaml, localConfigYaml, MESH_NAMESPACE, nodeName, podKey, TRUST_DOMAIN, type DemoPod } from "./layout.js";
import { spawnInNetns, stopProcess, tail, type NodeProcess } from "./processes.js";
import { DEMO_PREFIX, DEMO_ROOT, TOPOLOGY_DIR } from "./state.js";
import { PodmanNode } from "./podman.js";
import { Topology } from "./topology.js";

// One demo run: topology, mesh root, per node an agent and a ztunnel in local mode, pods
// made by the harness (veth, our plugin run by hand) or by podman (containers through the
// bridge + host-local + ours CNI chain), the apps. destroy() undoes all of it, in reverse order.

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST_SRC = join(HERE, "..");
export const AGENT_MAIN = join(DIST_SRC, "agent", "main.js");
export const ZTUNNEL_MAIN = join(DIST_SRC, "ztunnel", "main.js");
const CNI_DIR = join(DIST_SRC, "..", "cni-plugin");
export const AGENT_PORT = 15990;

/** How pods are made: netns + veth by the harness, or containers by podman through the CNI chain. */
export type PodsMode = "harness" | "podman";

export interface RunPod extends DemoPod {
  ip: string;
  /** The pod's network namespace (known once the pod exists; podman makes it at `run`). */
  netnsPath: string;
  /** What to show: the harness netns name, or the container id. */
  where: string;
}

export class DemoRun {
  readonly id: string;
  readonly runDir: string;
  readonly pods: RunPod[] = [];
  readonly processes: NodeProcess[] = [];
  readonly apps = new PodApps();
  readonly podman: PodmanNode[] = [];
  topo: Topology | undefined;
  private destroyed: Promise<void> | undefined;
  private aborted = false;

  constructor(readonly mode: PodsMode) {
    this.id = randomBytes(3).toString("hex");
    this.runDir = join(DEMO_ROOT, this.id);
  }

  get contextPath(): string {
    return join(this.runDir, "context.yaml");
  }
  get localConfigPath(): string {
    return join(this.runDir, "local-config.yaml");
  }
  inventoryPath(n: number): string {
    return join(this.runDir, nodeName(n), "inventory.yaml");
  }
  nodeNs(n: number): string {
    return this.topology.node(n).ns;
  }
  get topology(): Topology {
    if (this.topo === undefined) throw new DemoError("topology not created yet");
    return this.topo;
  }

  nodeTarget(n: number): NodeTarget {
    return {
      name: nodeName(n),
      netns: this.nodeNs(n),
      ztunnelAdmin: "http://127.0.0.1:15000",
      ztunnelReadiness: "http://127.0.0.1:15021",
      ztunnelStats: "http://127.0.0.1:15020",
      agent: `http://127.0.0.1:${AGENT_PORT}`,
      inventory: this.inventoryPath(n),
    };
  }

  pod(namespace: string, name: string): RunPod {
    const p = this.pods.find((x) => x.namespace === namespace && x.name === name);
    if (p === undefined) throw new DemoError(`no pod ${namespace}/${name}`);
    return p;
  }

  async createTopology(): Promise<void> {
    await mkdir(this.runDir, { recursive: true, mode: 0o700 });
    this.topo = await Topology.create({ nodes: 2, podsPerNode: 0, id: this.id, prefix: DEMO_PREFIX, stateDir: TOPOLOGY_DIR });
    if (this.mode === "harness") {
      for (const p of demoPods()) {
        this.check();
        const info = await this.topology.addPod(p.node, p.name);
        this.pods.push({ ...p, ip: info.ip, netnsPath: info.netnsPath, where: `netns ${info.ns}` });
      }
      return;
    }
    // podman: host-local hands out the node's pod CIDR from .2 in request order, and the pods
    // start in this order, so the addresses are known before ztunnel's config is written
    // (startPod checks each one).
    const perNode = [0, 0];
    for (const p of demoPods()) {
      const node = this.topology.node(p.node);
      const k = perNode[p.node]!++;
      this.pods.push({ ...p, ip: node.podCidr.replace(/\.0\/24$/, `.${k + 2}`), netnsPath: "", where: "(not started)" });
    }
    const exe = join(CNI_DIR, "ambient-cni");
    for (let n = 0; n < 2; n++) {
      this.check();
      const node = this.topology.node(n);
      const pm = new PodmanNode({
        dir: join(this.runDir, nodeName(n), "podman"),
        netnsPath: node.netnsPath,
        network: `ad${this.id}n${n}`,
        bridge: `cni${this.id}n${n}`,
        podCidr: node.podCidr,
        gateway: node.gateway,
        agentRunDir: join(this.runDir, nodeName(n), "cni"),
        plugin: existsSync(exe) ? { exe } : { node: process.execPath, script: join(CNI_DIR, "main.js") },
      });
      this.podman.push(pm);
      await pm.prepare();
    }
  }

  async writeConfig(): Promise<void> {
    const ips = new Map(this.pods.map((p) => [podKey(p), p.ip]));
    const root = await generateRoot(TRUST_DOMAIN);
    await mkdir(join(this.runDir, "ca"), { mode: 0o700 });
    await writeFile(join(this.runDir, "ca", "root-cert.pem"), root.certPem);
    await writeFile(join(this.runDir, "ca", "ca-key.pem"), root.keyPem, { mode: 0o600 });
    await writeFile(this.localConfigPath, localConfigYaml(this.pods, ips));
    for (let n = 0; n < 2; n++) {
      await mkdir(join(this.runDir, nodeName(n)), { recursive: true, mode: 0o700 });
      await writeFile(this.inventoryPath(n), inventoryYaml(this.pods, n, ips));
    }
    const ctx = {
      nodes: [0, 1].map((n) => this.nodeTarget(n)),
      localConfig: this.localConfigPath,
    };
    await writeFile(this.contextPath, `# ambientctl --context ${this.contextPath} <command>\n${JSON.stringify(ctx, null, 2)}\n`);
  }

  async startNode(n: number): Promise<void> {
    await this.startAgent(n);
    await this.startZtunnel(n);
  }

  /** The node's agent, started (or started again after a crash: the tests and the soak restart it) and healthy. */
  async startAgent(n: number): Promise<NodeProcess> {
    const dir = join(this.runDir, nodeName(n));
    const zdsSock = join(dir, "zds", "ztunnel.sock");
    const ns = this.nodeNs(n);
    this.check();
    const agent = spawnInNetns(ns, "agent", n, [AGENT_MAIN], {
      LOCAL_INVENTORY_PATH: this.inventoryPath(n),
      CNI_AGENT_RUN_DIR: join(dir, "cni"),
      ZTUNNEL_UDS_ADDRESS: zdsSock,
      CNI_INSTALL: "false",
      MOUNTED_CNI_NET_DIR: join(dir, "net.d"),
      MOUNTED_CNI_BIN_DIR: join(dir, "bin"),
      AMBIENT_IPV6: "false",
      AGENT_HTTP_ADDRESS: `127.0.0.1:${AGENT_PORT}`,
      VERIFY_INTERVAL: "5s",
      NODE_NAME: nodeName(n),
      LOG_LEVEL: "info",
    }, join(dir, "agent.log"));
    this.processes.push(agent);
    await this.waitFor(`agent on ${nodeName(n)} healthy`, n, "agent", async () => (await httpCall({ url: `http://127.0.0.1:${AGENT_PORT}`, netns: ns }, "/healthz", "GET", 1_000)).status === 200);
    return agent;
  }

  /** The node's ztunnel, started and ready. */
  async startZtunnel(n: number): Promise<void> {
    const dir = join(this.runDir, nodeName(n));
    const zdsSock = join(dir, "zds", "ztunnel.sock");
    const ns = this.nodeNs(n);
    this.check();
    this.processes.push(
      spawnInNetns(ns, "ztunnel", n, ztunnelNodeArgv(ZTUNNEL_MAIN), {
        INPOD_UDS: zdsSock,
        LOCAL_XDS_PATH: this.localConfigPath,
        CA_ROOT_DIR: join(this.runDir, "ca"),
        ZTUNNEL_WORKER_THREADS: "2",
        NODE_NAME: nodeName(n),
        TRUST_DOMAIN,
        IPV6_ENABLED: "false",
        CONNECTION_TERMINATION_DEADLINE: "1s",
        LOG_LEVEL: "info",
      }, join(dir, "ztunnel.log")),
    );
    await this.waitFor(`ztunnel on ${nodeName(n)} ready`, n, "ztunnel", async () => (await httpCall({ url: "http://127.0.0.1:15021", netns: ns }, "/healthz/ready", "GET", 1_000)).status === 200);
  }

  /** `ambientctl enroll demo`, local flavour: label in every inventory, workloads → HBONE. */
  async enroll(): Promise<string[]> {
    const r = await enrollLocal(MESH_NAMESPACE, true, { inventories: [0, 1].map((n) => this.inventoryPath(n)), localConfig: this.localConfigPath });
    return r.changed;
  }

  /** Starts a pod: through podman, or as the harness's stand-in for a runtime. */
  async startPod(p: RunPod): Promise<void> {
    this.check();
    if (this.mode === "harness") {
      await this.startHarnessPod(p);
      return;
    }
    const pm = this.podman[p.node];
    if (pm === undefined) throw new DemoError(`no podman for ${nodeName(p.node)}`);
    const c = await pm.runPod(p.name, podKey(p));
    p.netnsPath = c.netnsPath;
    p.where = `container ${c.id.slice(0, 12)}  netns ${c.netnsPath}`;
    if (c.ip !== p.ip) throw new DemoError(`podman gave ${podKey(p)} the address ${c.ip}, the demo expected ${p.ip} (host-local allocates in order; was the pod CIDR in use?)`);
  }

  /** A container runtime starting the pod: the app, then our CNI plugin's ADD (after bridge/host-local). */
  private async startHarnessPod(p: RunPod): Promise<string> {
    await this.apps.serve(p.netnsPath, podKey(p));
    return await this.cni(p, "ADD");
  }

  /** Our CNI plugin run for a harness pod as a runtime would (the soak bench churns pods with ADD/DEL). */
  async cni(p: RunPod, command: "ADD" | "DEL"): Promise<string> {
    const node = this.topology.node(p.node);
    const conf = {
      cniVersion: "1.0.0",
      name: "demo",
      type: "ambient-cni",
      cni_agent_run_dir: join(this.runDir, nodeName(p.node), "cni"),
      ambient_enabled: true,
      plugin_log_level: "warn",
      prevResult: {
        cniVersion: "1.0.0",
        interfaces: [{ name: "eth0", sandbox: p.netnsPath }],
        ips: [{ address: `${p.ip}/32`, gateway: node.gateway, interface: 0 }],
      },
    };
    const exe = join(CNI_DIR, "ambient-cni");
    const [cmd, args] = existsSync(exe) ? [exe, []] : [process.execPath, [join(CNI_DIR, "main.js")]];
    const env = {
      ...process.env,
      CNI_COMMAND: command,
      CNI_CONTAINERID: createContainerId(p),
      CNI_NETNS: p.netnsPath,
      CNI_IFNAME: "eth0",
      CNI_PATH: "/usr/lib/cni",
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=${p.name};K8S_POD_NAMESPACE=${p.namespace};K8S_POD_UID=${p.uid}`,
    };
    return await new Promise<string>((resolve, reject) => {
      const child = execFile(cmd, args, { env, timeout: 15_000 }, (err, stdout, stderr) => {
        if (err !== null) reject(new DemoError(`CNI ${command} of ${podKey(p)} failed: ${stdout.trim() || stderr.trim() || err.message}`));
        else resolve(stdout);
      });
      child.stdin?.end(JSON.stringify(conf));
    });
  }

  async waitPodsUp(): Promise<void> {
    for (let n = 0; n < 2; n++) {
      const want = this.pods.filter((p) => p.node === n && p.namespace === MESH_NAMESPACE).map((p) => p.uid);
      await this.waitFor(`ztunnel on ${nodeName(n)} serving ${want.length} pods`, n, "ztunnel", async () => {
        const d = await fetchDump(this.nodeTarget(n));
        return want.every((uid) => d.pods.some((x) => x.uid === uid && x.state === "Up" && x.listeners.length > 0));
      });
    }
  }

  private async waitFor(what: string, n: number, proc: string, cond: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      this.check();
      // The newest one: a restarted process follows the one that died.
      const p = this.processes.findLast((x) => x.node === n && x.what === proc);
      if (p?.child !== undefined && (p.child.exitCode !== null || p.child.signalCode !== null)) {
        throw new DemoError(`${proc} on ${nodeName(n)} exited; its log ${p.log} ends with:\n${tail(p.log)}`);
      }
      try {
        if (await cond()) return;
      } catch (err) {
        last = errorMessage(err);
      }
      if (Date.now() > deadline) {
        const log = p !== undefined ? `\n${p.log} ends with:\n${tail(p.log)}` : "";
        throw new DemoError(`timed out waiting for ${what}${last !== "" ? ` (last: ${last})` : ""}${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Removes containers (their CNI DEL still reaches the agent), stops processes (ztunnel first: it drains), closes the apps, deletes the netns and files. Idempotent. */
  async destroy(): Promise<void> {
    this.destroyed ??= (async () => {
      const errors: string[] = [];
      const podmanErrors = await Promise.all(this.podman.map(async (pm) => await pm.destroy().catch((e: unknown) => [errorMessage(e)])));
      errors.push(...podmanErrors.flat());
      for (const what of ["ztunnel", "agent"]) {
        await Promise.all(this.processes.filter((p) => p.what === what).map((p) => stopProcess(p.pid).catch((e: unknown) => errors.push(errorMessage(e)))));
      }
      await this.apps.close().catch((e: unknown) => errors.push(errorMessage(e)));
      await this.topo?.destroy().catch((e: unknown) => errors.push(errorMessage(e)));
      await rm(this.runDir, { recursive: true, force: true });
      if (errors.length > 0) throw new DemoError(`cleanup incomplete: ${errors.join("; ")}`);
    })();
    await this.destroyed;
  }

  /** Ctrl-C: the step in progress stops at its next check; the caller then destroys. */
  abort(): void {
    this.aborted = true;
  }

  interruptedBySignal(): boolean {
    return this.aborted;
  }

  check(): void {
    if (this.aborted) throw new DemoError("interrupted");
  }
}

function createContainerId(p: DemoPod): string {
  return (p.uid.replace(/-/g, "") + p.uid.replace(/-/g, "")).slice(0, 64);
}
