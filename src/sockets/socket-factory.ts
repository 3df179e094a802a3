import type { Server, Socket } from "node:net";

/**
 * The one seam between proxy code and where its sockets live. The proxy never knows whether
 * it runs for a pod (sockets created inside the pod's netns, carrying the packet mark) or on
 * the host; it only asks this interface.
 */
export interface SocketFactory {
  /** A listening TCP server; resolves once it is listening. */
  listenTcp(opts: ListenOptions): Promise<Server>;
  /** An outbound TCP connection; emits 'connect' or 'error' like `net.connect`. */
  connectTcp(opts: ConnectOptions): Socket;
}

export interface ListenOptions {
  address: string;
  port: number;
  backlog?: number;
  /** Accept connections addressed to any IP (IP_TRANSPARENT); needed for inbound capture. */
  transparent?: boolean;
  /**
   * Accepted sockets are not read until resume(): what a client sends before its upstream is
   * ready stays in the kernel, costing no wake-up and no buffer of ours.
   */
  pauseOnConnect?: boolean;
}

export interface ConnectOptions {
  host: string;
  port: number;
  /** Bind to this source address first (spoofing needs IP_TRANSPARENT, which in-pod sockets set). */
  sourceAddress?: string;
  noDelay?: boolean;
  keepAlive?: { idleSec: number; intervalSec: number; count: number };
  userTimeoutMs?: number;
}
