import { join } from "node:path";
import { ZTUNNEL_NODE_FLAGS } from "../../src/ztunnel/node-flags.js";
import type { Topology } from "../../test/harness/topology.js";
import { waitForLine } from "../lib/proc.js";
import type { StunnelPki } from "../stunnel/certs.js";
import type { Forward, StunnelPath } from "../stunnel/tunnel.js";
import { floorArgv, type FloorArgs } from "./args.js";

// The Node floor paths, laid out like the stunnel reference (bench/stunnel/tunnel.ts): client
// pod → relay in node 0's netns → node link → relay in node 1's netns → server pod.
//   nodetls: TLS over the node link (stunnel's certificates and suite)
//   nodetcp: plain TCP both hops (what Node's per-connection work costs without any TLS)
// Each relay runs with ztunnel's node flags. Both processes are tracked by the topology.

export type FloorKind = "nodetls" | "nodetcp";

const RELAY = join(import.meta.dirname, "relay.js");

export async function startFloorPath(topo: Topology, kind: FloorKind, pki: StunnelPki, clientNode: number, serverNode: number, serverPodIp: string, forwards: readonly Forward[]): Promise<StunnelPath> {
  const entry = topo.node(clientNode);
  const exit = topo.node(serverNode);
  // The second hop listens on entryPort + 1 on the server node, as stunnel's does.
  const clientSide: FloorArgs = {
    mode: kind === "nodetls" ? "tls-client" : "tcp",
    forwards: forwards.map((f) => ({ listen: { host: entry.gateway, port: f.entryPort }, connect: { host: exit.ip, port: f.entryPort + 1 } })),
  };
  const serverSide: FloorArgs = {
    mode: kind === "nodetls" ? "tls-server" : "tcp",
    forwards: forwards.map((f) => ({ listen: { host: exit.ip, port: f.entryPort + 1 }, connect: { host: serverPodIp, port: f.targetPort } })),
  };
  if (kind === "nodetls") {
    clientSide.pki = { ...pki.client, caFile: pki.caFile };
    serverSide.pki = { ...pki.server, caFile: pki.caFile };
  }
  const start = async (ns: string, args: FloorArgs, what: string): Promise<number> => {
    const child = topo.spawn(ns, process.execPath, [...ZTUNNEL_NODE_FLAGS, RELAY, ...floorArgv(args)]);
    if (child.pid === undefined) throw new Error(`${what} did not start (no pid)`);
    await waitForLine(child, "ready", what, 10_000);
    child.stdout?.resume();
    child.stderr?.resume();
    return child.pid;
  };
  const serverPid = await start(exit.ns, serverSide, `${kind} relay (server side)`);
  const clientPid = await start(entry.ns, clientSide, `${kind} relay (client side)`);
  return { host: entry.gateway, ports: Object.fromEntries(forwards.map((f) => [f.name, f.entryPort])), pids: [clientPid, serverPid] };
}
