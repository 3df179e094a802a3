import type { ChildProcess, SpawnOptions } from "node:child_process";
import { deleteNetns, execIn, killAndWait, netnsPath, run, runId, spawnIn, type ExecResult } from "./netns.js";
import { addressingFor, checkName, MAX_NODES, MAX_PODS_PER_NODE, v6, type Addressing } from "./topology-names.js";
import { cleanupStale, ignoreGone, killProcessesIn, removeOwnerRecord, TOPOLOGY_PREFIX, TOPOLOGY_STATE_DIR, writeOwnerRecord } from "./topology-owner.js";
import type { NodeInfo, PodInfo, TopologyExecOptions, TopologySpec } from "./topology-types.js";

export { cleanupStale, TOPOLOGY_PREFIX, TOPOLOGY_STATE_DIR } from "./topology-owner.js";
export type { NodeInfo, PodInfo, TopologyExecOptions, TopologySpec } from "./topology-types.js";

// A test cluster without a cluster (DESIGN §11): a bridge in a "network" netns, one netns per
// node attached to it by veth, pod netns joined to their node netns by veth. Pods are routed
// (point-to-point, like Calico's veth model): a pod has a /32 (/128) address and a default route
// via its node's gateway address; nodes route each other's pod CIDRs over the bridge. Every
// object lives inside namespaces this class creates; the machine's root netns only gets the
// netns files under /var/run/netns.

let staleSweep: Promise<string[]> | undefined;

export class Topology {
  readonly id: string;
  readonly networkNs: string;
  readonly nodes: NodeInfo[] = [];
  readonly pods: PodInfo[] = [];
  readonly ipv6: boolean;

  private readonly addr: Addressing;
  private readonly bridge: string;
  /** Every netns this instance created, in creation order (destroy deletes only these). */
  private readonly createdNs: string[] = [];
  private readonly tracked = new Map<ChildProcess, string>();
  private readonly nextPodIndex: number[] = [];
  private destroyed = false;
  /** True once this instance wrote its owner record (only then does destroy remove it). */
  private ownsRecord = false;
  private destroying: Promise<void> | undefined;

  private readonly prefix: string;
  private readonly stateDir: string;

  private constructor(id: string, ipv6: boolean, prefix: string, stateDir: string) {
    this.id = id;
    this.ipv6 = ipv6;
    this.prefix = prefix;
    this.stateDir = stateDir;
    this.addr = addressingFor(id);
    this.networkNs = checkName(`${prefix}${id}-net`);
    this.bridge = checkName(`b${id}`);
  }

  /** Builds the whole topology; if any step fails, removes what it made and rethrows. */
  static async create(spec: TopologySpec): Promise<Topology> {
    const id = spec.id ?? runId();
    if (!/^[0-9a-z]{1,6}$/.test(id)) throw new Error(`topology id "${id}" must be 1-6 characters of [0-9a-z]`);
    if (!Number.isInteger(spec.nodes) || spec.nodes < 1 || spec.nodes > MAX_NODES) {
      throw new Error(`topology nodes must be an integer in 1..${MAX_NODES}, got ${spec.nodes}`);
    }
    if (!Number.isInteger(spec.podsPerNode) || spec.podsPerNode < 0 || spec.podsPerNode > MAX_PODS_PER_NODE) {
      throw new Error(`topology podsPerNode must be an integer in 0..${MAX_PODS_PER_NODE}, got ${spec.podsPerNode}`);
    }
    // Safety net, once per process: netns of crashed earlier runs go before we add ours.
    staleSweep ??= cleanupStale().catch(() => []);
    await staleSweep;
    const prefix = spec.prefix ?? TOPOLOGY_PREFIX;
    if (!/^[a-z][a-z0-9]{0,2}-$/.test(prefix)) throw new Error(`topology prefix "${prefix}" must be 1-3 characters of [a-z0-9] and a dash`);
    const topo = new Topology(id, spec.ipv6 === true, prefix, spec.stateDir ?? TOPOLOGY_STATE_DIR);
    try {
      await topo.writeOwner();
      await topo.createNetwork();
      for (let n = 0; n < spec.nodes; n++) await topo.createNode(n);
      for (const node of topo.nodes) await topo.routeBetweenNodes(node);
      for (let n = 0; n < spec.nodes; n++) {
        for (let i = 0; i < spec.podsPerNode; i++) await topo.addPod(n);
      }
      return topo;
    } catch (err) {
      await topo.destroy().catch(() => undefined);
      throw err;
    }
  }

  pod(node: number, i: number): PodInfo {
    const pods = this.pods.filter((p) => p.node === node);
    const pod = pods[i];
    if (!pod) throw new Error(`topology ${this.id}: node ${node} has no pod #${i} (it has ${pods.length})`);
    return pod;
  }

  node(index: number): NodeInfo {
    const node = this.nodes[index];
    if (!node) throw new Error(`topology ${this.id}: no node ${index} (there are ${this.nodes.length})`);
    return node;
  }

  /** Adds a pod to a node (also usable after create, e.g. "a new pod appears"). */
  async addPod(nodeIndex: number, name?: string): Promise<PodInfo> {
    this.assertUsable();
    const node = this.node(nodeIndex);
    const k = this.nextPodIndex[nodeIndex] ?? 0;
    if (k >= MAX_PODS_PER_NODE) throw new Error(`topology ${this.id}: node ${nodeIndex} has no pod addresses left`);
    this.nextPodIndex[nodeIndex] = k + 1;
    const ns = checkName(`${this.prefix}${this.id}-n${nodeIndex}p${k}`);
    const hostVeth = checkName(`h${this.id}n${nodeIndex}p${k}`);
    const ip = `10.${this.addr.x}.${nodeIndex}.${k + 2}`;
    const ip6 = this.ipv6 ? v6(`${this.addr.v6}${nodeIndex.toString(16)}::${(k + 2).toString(16)}`) : undefined;

    await this.newNetns(ns);
    // Both veth ends are created directly in their namespaces (never in the root netns).
    await run("ip", ["-n", node.ns, "link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    await this.batch(node.ns, [
      `link set ${hostVeth} up`,
      `addr add ${node.gateway}/32 dev ${hostVeth}`,
      `route add ${ip}/32 dev ${hostVeth}`,
      ...(ip6 && node.gateway6 ? [`addr add ${node.gateway6}/128 dev ${hostVeth} nodad`, `route add ${ip6}/128 dev ${hostVeth}`] : []),
    ]);
    await this.batch(ns, [
      `link set eth0 up`,
      `addr add ${ip}/32 dev eth0`,
      `route add ${node.gateway}/32 dev eth0 scope link`,
      `route add default via ${node.gateway} dev eth0`,
      ...(ip6 && node.gateway6
        ? [`addr add ${ip6}/128 dev eth0 nodad`, `route add ${node.gateway6}/128 dev eth0`, `route add default via ${node.gateway6} dev eth0`]
        : []),
    ]);
    const pod: PodInfo = { name: name ?? `n${nodeIndex}p${k}`, node: nodeIndex, ns, netnsPath: netnsPath(ns), ip, hostVeth };
    if (ip6) pod.ip6 = ip6;
    this.pods.push(pod);
    return pod;
  }

  /** Removes a pod: kills processes inside it, then its veth and netns. */
  async removePod(pod: PodInfo): Promise<void> {
    await this.killTrackedIn(pod.ns);
    await killProcessesIn(pod.ns);
    const node = this.nodes[pod.node];
    if (node) await ignoreGone(run("ip", ["-n", node.ns, "link", "del", pod.hostVeth]));
    await deleteNetns(pod.ns);
    const idx = this.createdNs.indexOf(pod.ns);
    if (idx >= 0) this.createdNs.splice(idx, 1);
    const p = this.pods.indexOf(pod);
    if (p >= 0) this.pods.splice(p, 1);
  }

  /** Runs a command to completion inside one of this topology's netns. */
  async exec(ns: string, cmd: string, args: string[], opts: TopologyExecOptions = {}): Promise<ExecResult> {
    this.assertOwned(ns);
    return await execIn(ns, cmd, args, opts);
  }

  /** One ICMP echo from a netns (busybox ping: iputils is not installed here); rejects if no reply. */
  async ping(ns: string, address: string, timeoutSeconds = 2): Promise<void> {
    const family = address.includes(":") ? ["-6"] : ["-4"];
    await this.exec(ns, "busybox", ["ping", ...family, "-c", "1", "-W", String(timeoutSeconds), address]);
  }

  /** Starts a long-running process inside a netns; it is killed (and waited for) on destroy. */
  spawn(ns: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    this.assertUsable();
    this.assertOwned(ns);
    const child = spawnIn(ns, cmd, args, opts);
    this.tracked.set(child, ns);
    child.once("exit", () => this.tracked.delete(child));
    return child;
  }

  /** `node script ...args` inside a netns (this Node binary), tracked like `spawn`. */
  spawnNode(ns: string, script: string, args: string[], env: Record<string, string> = {}): ChildProcess {
    return this.spawn(ns, process.execPath, [script, ...args], { env: { ...process.env, ...env } });
  }

  /** Kills tracked processes first (waiting for them), then deletes every netns this instance made. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroying ??= this.doDestroy();
    await this.destroying;
  }

  private async doDestroy(): Promise<void> {
    const errors: unknown[] = [];
    await Promise.all([...this.tracked.keys()].map((c) => killAndWait(c)));
    this.tracked.clear();
    // Reverse order: pods, then nodes, then the network.
    for (const ns of [...this.createdNs].reverse()) {
      try {
        await killProcessesIn(ns);
        await deleteNetns(ns);
      } catch (err) {
        errors.push(err);
      }
    }
    this.createdNs.length = 0;
    this.pods.length = 0;
    this.destroyed = true;
    if (this.ownsRecord) await removeOwnerRecord(this.stateDir, this.id);
    if (errors.length > 0) {
      throw new AggregateError(errors, `topology ${this.id}: cleanup left errors: ${errors.map(String).join("; ")}`);
    }
  }

  private assertUsable(): void {
    if (this.destroyed || this.destroying) throw new Error(`topology ${this.id} is destroyed`);
  }

  private assertOwned(ns: string): void {
    if (!this.createdNs.includes(ns)) throw new Error(`netns "${ns}" is not part of topology ${this.id}`);
  }

  private async killTrackedIn(ns: string): Promise<void> {
    const children = [...this.tracked].filter(([, n]) => n === ns).map(([c]) => c);
    await Promise.all(children.map((c) => killAndWait(c)));
    for (const c of children) this.tracked.delete(c);
  }

  private async newNetns(ns: string): Promise<void> {
    this.assertUsable();
    await run("ip", ["netns", "add", ns]);
    this.createdNs.push(ns);
    await execIn(ns, "ip", ["link", "set", "lo", "up"]);
    if (this.ipv6) {
      // No duplicate address detection: tentative link-local addresses delay the first packets
      // of a fresh veth by about a second. Set before any link exists so every link inherits it.
      await execIn(ns, "sysctl", ["-q", "-w", "net.ipv6.conf.all.accept_dad=0", "-w", "net.ipv6.conf.default.accept_dad=0"]);
    }
  }

  /** Several `ip` commands in one process (`ip -batch`), inside a netns. */
  private async batch(ns: string, lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    await run("ip", ["-n", ns, "-batch", "-"], { input: lines.join("\n") + "\n" });
  }

  private async writeOwner(): Promise<void> {
    // Written before any netns exists, so a crash mid-creation still leaves a record to clean by.
    await writeOwnerRecord(this.stateDir, this.prefix, this.id);
    this.ownsRecord = true;
  }

  private async createNetwork(): Promise<void> {
    await this.newNetns(this.networkNs);
    await this.batch(this.networkNs, [`link add ${this.bridge} type bridge`, `link set ${this.bridge} up`]);
  }

  private async createNode(n: number): Promise<void> {
    const { x, v6: base6 } = this.addr;
    const ns = checkName(`${this.prefix}${this.id}-n${n}`);
    const up = checkName(`e${this.id}n${n}`); // node end, inside the node netns
    const down = checkName(`b${this.id}n${n}`); // bridge port, inside the network netns
    const node: NodeInfo = {
      index: n,
      ns,
      netnsPath: netnsPath(ns),
      ip: `192.168.${x}.${n + 1}`,
      podCidr: `10.${x}.${n}.0/24`,
      gateway: `10.${x}.${n}.1`,
    };
    if (this.ipv6) {
      node.ip6 = v6(`${base6}ffff::${(n + 1).toString(16)}`);
      node.podCidr6 = `${v6(`${base6}${n.toString(16)}::`)}/64`;
      node.gateway6 = v6(`${base6}${n.toString(16)}::1`);
    }
    await this.newNetns(ns);
    await run("ip", ["-n", ns, "link", "add", up, "type", "veth", "peer", "name", down, "netns", this.networkNs]);
    await this.batch(this.networkNs, [`link set ${down} master ${this.bridge}`, `link set ${down} up`]);
    await this.batch(ns, [
      `link set ${up} up`,
      `addr add ${node.ip}/24 dev ${up}`,
      ...(node.ip6 ? [`addr add ${node.ip6}/64 dev ${up} nodad`] : []),
    ]);
    await execIn(ns, "sysctl", [
      "-q",
      "-w",
      "net.ipv4.ip_forward=1",
      ...(this.ipv6 ? ["-w", "net.ipv6.conf.all.forwarding=1"] : []),
    ]);
    this.nodes.push(node);
  }

  private async routeBetweenNodes(node: NodeInfo): Promise<void> {
    const lines: string[] = [];
    for (const other of this.nodes) {
      if (other.index === node.index) continue;
      lines.push(`route add ${other.podCidr} via ${other.ip}`);
      if (other.podCidr6 && other.ip6) lines.push(`route add ${other.podCidr6} via ${other.ip6}`);
    }
    await this.batch(node.ns, lines);
  }
}

/** Creates a topology, runs `fn`, and always destroys it. */
export async function withTopology<T>(spec: TopologySpec, fn: (topo: Topology) => Promise<T>): Promise<T> {
  const topo = await Topology.create(spec);
  try {
    return await fn(topo);
  } finally {
    await topo.destroy();
  }
}
