import { createSocket as createDgram, type Socket as DgramSocket } from "node:dgram";
import { isIP } from "node:net";
import { closeFd, createSocket, type NetnsHandle, type SocketSpec } from "../native/index.js";

// UDP sockets made by the native createSocket (inside a netns, with a mark) and handed to Node:
// dgram adopts an fd through bind({ fd }), without binding again.

export interface UdpSocketOptions {
  /** null: the calling thread's own netns. */
  netns: NetnsHandle | null;
  family: 4 | 6;
  mark?: number;
  /** Bind here (listeners); unset: the kernel picks an ephemeral port at the first send. */
  bind?: { address: string; port: number };
  reusePort?: boolean;
}

/** A dgram socket over a native UDP socket; resolves once Node has adopted the fd. */
export async function udpSocket(opts: UdpSocketOptions): Promise<DgramSocket> {
  if (opts.bind !== undefined && isIP(opts.bind.address) !== opts.family) {
    throw new TypeError(`bind address ${opts.bind.address} is not an IPv${opts.family} address`);
  }
  const spec: SocketSpec = { family: opts.family, type: "udp" };
  if (opts.mark !== undefined) spec.mark = opts.mark;
  if (opts.bind !== undefined) {
    spec.bind = opts.bind;
    spec.reuseAddr = true;
    if (opts.reusePort === true) spec.reusePort = true;
  }
  const fd = createSocket(opts.netns, spec);
  const socket = createDgram({ type: opts.family === 4 ? "udp4" : "udp6" });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind({ fd }, () => {
        socket.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    // Node did not adopt the fd: it is still ours to close.
    try {
      closeFd(fd);
    } catch {
      // already gone
    }
    throw err;
  }
  return socket;
}
