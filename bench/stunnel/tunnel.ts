import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Topology } from "../../test/harness/topology.js";
import { waitListening } from "../lib/proc.js";
import { makeStunnelPki } from "./certs.js";
import { renderStunnelConfig, type StunnelService } from "./config.js";

// The two-hop reference path: client pod → stunnel (client mode) in node 0's netns → TLS over
// the node link → stunnel (server mode) in node 1's netns → server pod. Both processes are
// tracked by the topology, so its destroy() stops them.

export interface Forward {
  name: string;
  /** Port the client pod dials on its gateway (node 0 side of its veth). */
  entryPort: number;
  /** Port on the server pod the traffic ends at. */
  targetPort: number;
}

export interface StunnelPath {
  /** Address the client pod dials (its node's gateway address). */
  host: string;
  ports: Record<string, number>;
  /** The two stunnel4 processes (client side, server side), for CPU accounting. */
  pids: number[];
}

export async function startStunnelPath(topo: Topology, dir: string, clientNode: number, serverNode: number, serverPodIp: string, forwards: readonly Forward[]): Promise<StunnelPath> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const pki = await makeStunnelPki(dir);
  const entry = topo.node(clientNode);
  const exit = topo.node(serverNode);
  // The TLS hop listens on entryPort + 1 on the server node.
  const client: StunnelService[] = forwards.map((f) => ({ name: f.name, accept: `${entry.gateway}:${f.entryPort}`, connect: `${exit.ip}:${f.entryPort + 1}` }));
  const server: StunnelService[] = forwards.map((f) => ({ name: f.name, accept: `${exit.ip}:${f.entryPort + 1}`, connect: `${serverPodIp}:${f.targetPort}` }));
  const clientConf = join(dir, "client.conf");
  const serverConf = join(dir, "server.conf");
  await writeFile(clientConf, renderStunnelConfig({ client: true, services: client, caFile: pki.caFile, ...pki.client }));
  await writeFile(serverConf, renderStunnelConfig({ client: false, services: server, caFile: pki.caFile, ...pki.server }));
  const start = (ns: string, conf: string): number => {
    // `ip netns exec` execs stunnel4 in place (foreground = yes): the child's pid is stunnel's.
    const child = topo.spawn(ns, "stunnel4", [conf]);
    // Drain its log so a full pipe never blocks it.
    child.stdout?.resume();
    child.stderr?.resume();
    if (child.pid === undefined) throw new Error("stunnel4 did not start (no pid)");
    return child.pid;
  };
  const serverPid = start(exit.ns, serverConf);
  const clientPid = start(entry.ns, clientConf);
  for (const f of forwards) {
    await waitListening(topo, exit.ns, f.entryPort + 1, "stunnel server");
    await waitListening(topo, entry.ns, f.entryPort, "stunnel client");
  }
  return { host: entry.gateway, ports: Object.fromEntries(forwards.map((f) => [f.name, f.entryPort])), pids: [clientPid, serverPid] };
}
