import { isIP, Socket, type Server } from "node:net";
import { createSocket, type NetnsHandle, type SocketSpec } from "../native/index.js";
import { serverFromFd, socketConnectFromFd } from "./fd.js";
import type { ConnectOptions, ListenOptions, SocketFactory } from "./socket-factory.js";

function familyOf(address: string, what: string): 4 | 6 {
  const f = isIP(address);
  if (f === 0) throw new TypeError(`${what} must be an IP address, got "${address}"`);
  return f as 4 | 6;
}

/** Where and how this factory's sockets are made. */
export interface NativeFactoryConfig {
  /** null: the calling thread's own netns. */
  netns: NetnsHandle | null;
  /** SO_MARK on every socket; undefined: none. */
  mark: number | undefined;
  /** SO_REUSEPORT on listeners (one listener per worker thread on the same port). */
  reusePort: boolean;
  /** IP_TRANSPARENT on outbound sockets bound to a sourceAddress (spoof the original source). */
  spoofSource: boolean;
}

/**
 * SocketFactory on top of the native createSocket: every socket is created in `netns` with the
 * mark and options in one native call, then handed to Node (net.Server / net.Socket own the fd).
 * Servers and sockets allow half-open connections (a proxy relays each direction's end).
 * Outbound sockets default to TCP_NODELAY unless `noDelay: false`.
 */
export class NativeSocketFactory implements SocketFactory {
  constructor(private readonly config: NativeFactoryConfig) {}

  async listenTcp(opts: ListenOptions): Promise<Server> {
    const backlog = opts.backlog ?? 511;
    const spec: SocketSpec = {
      family: familyOf(opts.address, "listen address"),
      type: "tcp",
      reuseAddr: true,
      reusePort: this.config.reusePort,
      transparent: opts.transparent === true,
      bind: { address: opts.address, port: opts.port },
      listen: { backlog },
      // Accepted sockets inherit TCP_NODELAY from the listener (Linux copies it at accept), so
      // no proxied connection, HBONE transport included, waits on Nagle for an ACK.
      noDelay: true,
    };
    if (this.config.mark !== undefined) spec.mark = this.config.mark;
    const fd = createSocket(this.config.netns, spec);
    return await serverFromFd(fd, { allowHalfOpen: true, backlog, pauseOnConnect: opts.pauseOnConnect === true });
  }

  connectTcp(opts: ConnectOptions): Socket {
    let fd: number;
    try {
      fd = createSocket(this.config.netns, this.#connectSpec(opts));
    } catch (err) {
      // Same contract as net.connect(): failures arrive as 'error' on the returned Socket.
      // This Socket has no handle and is never connected (see socketConnectFromFd on reuse).
      const failed = new Socket();
      failed.destroy(err as Error);
      return failed;
    }
    return socketConnectFromFd(fd, opts.host, opts.port, { allowHalfOpen: true });
  }

  #connectSpec(opts: ConnectOptions): SocketSpec {
    const family = familyOf(opts.host, "connect host");
    const spec: SocketSpec = { family, type: "tcp", noDelay: opts.noDelay ?? true };
    if (this.config.mark !== undefined) spec.mark = this.config.mark;
    if (opts.keepAlive !== undefined) spec.keepAlive = opts.keepAlive;
    if (opts.userTimeoutMs !== undefined) spec.userTimeoutMs = opts.userTimeoutMs;
    if (opts.sourceAddress !== undefined) {
      if (familyOf(opts.sourceAddress, "sourceAddress") !== family) {
        throw new TypeError(`sourceAddress ${opts.sourceAddress} and host ${opts.host} are different IP families`);
      }
      spec.bind = { address: opts.sourceAddress, port: 0 };
      // The port is chosen at connect() time, so many sockets can share one source address.
      spec.bindAddressNoPort = true;
      if (this.config.spoofSource) spec.transparent = true;
    }
    return spec;
  }
}
