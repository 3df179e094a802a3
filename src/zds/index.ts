// ZDS wired to the kernel: the agent's server and ztunnel's client on a SEQPACKET socket path.
import type { NetnsHandle } from "../native/index.js";
import type { Logger } from "../shared/log.js";
import { ZdsClient, type ZdsClientOptions } from "./client.js";
import { connectSeqpacket, listenSeqpacket, nativeNetnsOps } from "./native-transport.js";
import { ZdsServer, type PodInventory, type ZdsServerOptions } from "./server.js";
import type { WorkloadProxyManager } from "./workload-state.js";

export const DEFAULT_ZDS_SOCKET = "/var/run/ztunnel/ztunnel.sock";

export function createZdsServer(inventory: PodInventory, options: Partial<ZdsServerOptions> & { socketPath?: string; log?: Logger } = {}): ZdsServer {
  const { socketPath = DEFAULT_ZDS_SOCKET, ...rest } = options;
  return new ZdsServer(listenSeqpacket(socketPath), nativeNetnsOps, inventory, rest);
}

/** Creates (not yet started) ztunnel's ZDS client; call start(). */
export function createZdsClient(
  manager: WorkloadProxyManager<NetnsHandle>,
  options: Partial<ZdsClientOptions> & { socketPath?: string; random?: () => number; log?: Logger } = {},
): ZdsClient<NetnsHandle> {
  const { socketPath = DEFAULT_ZDS_SOCKET, ...rest } = options;
  return new ZdsClient<NetnsHandle>(() => connectSeqpacket(socketPath), nativeNetnsOps, manager, rest);
}

export { ZdsServer, type PodEntry, type PodInventory, type ZdsServerOptions } from "./server.js";
export { ZdsClient, type ZdsClientOptions } from "./client.js";
export type { WorkloadProxyManager, Readiness, WorkloadSummary } from "./workload-state.js";
export type { WorkloadInfo } from "./codec.js";
export * from "./errors.js";
export type { NetnsRef, NetnsOps, DatagramConn, DatagramListener, PeerCredentials } from "./transport.js";
