import type { Socket as DgramSocket } from "node:dgram";
import { isIP, type Socket } from "node:net";
import type { NetnsHandle } from "../../native/index.js";
import { udpSocket } from "../../sockets/index.js";
import type { SocketFactory } from "../../sockets/socket-factory.js";
import { answersId } from "./codec.js";
import { DnsUpstreamError } from "./errors.js";

// One exchange with one upstream resolver over UDP or TCP. Sockets come from the pod's netns
// and carry ztunnel's mark, so the pod's capture rules let them out (DESIGN §15). Every
// exchange has its own socket (a fresh source port per query) and a timeout; nothing outlives it.

export interface Upstream {
  readonly address: string;
  readonly port: number;
}

export interface UpstreamTransport {
  /** Sends `query` (whose id is `id`) and resolves with the first response carrying that id. */
  udp(server: Upstream, query: Buffer, id: number, timeoutMs: number): Promise<Buffer>;
  tcp(server: Upstream, query: Buffer, id: number, timeoutMs: number): Promise<Buffer>;
}

export function formatUpstream(u: Upstream): string {
  return isIP(u.address) === 6 ? `[${u.address}]:${u.port}` : `${u.address}:${u.port}`;
}

/** Largest TCP DNS message (16-bit length prefix). */
const MAX_TCP_MESSAGE = 65_535;

export interface SocketTransportOptions {
  /** Where UDP sockets are made (the pod's netns); null: this thread's own. */
  readonly netns: NetnsHandle | null;
  readonly mark: number | undefined;
  /** TCP connections (the pod's in-pod factory). */
  readonly tcp: SocketFactory;
}

export class SocketUpstreamTransport implements UpstreamTransport {
  constructor(private readonly opts: SocketTransportOptions) {}

  async udp(server: Upstream, query: Buffer, id: number, timeoutMs: number): Promise<Buffer> {
    const family = isIP(server.address) === 6 ? 6 : 4;
    const socket = await udpSocket({ netns: this.opts.netns, family, ...(this.opts.mark !== undefined ? { mark: this.opts.mark } : {}) });
    return await new Promise<Buffer>((resolve, reject) => {
      const done = (err: Error | undefined, res?: Buffer): void => {
        clearTimeout(timer);
        socket.removeAllListeners("message");
        closeQuietly(socket);
        if (err !== undefined) reject(err);
        else resolve(res as Buffer);
      };
      const timer = setTimeout(() => done(new DnsUpstreamError(`${formatUpstream(server)} (udp): no answer within ${timeoutMs} ms`)), timeoutMs);
      socket.on("error", (err) => done(new DnsUpstreamError(`${formatUpstream(server)} (udp): ${err.message}`, { cause: err })));
      // Replies with another id (late answers to someone else, spoofing attempts) are ignored.
      socket.on("message", (msg) => {
        if (answersId(msg, id)) done(undefined, msg);
      });
      // Connected: only the upstream's packets are delivered, and ICMP unreachable becomes an error.
      socket.connect(server.port, server.address, () => socket.send(query));
    });
  }

  async tcp(server: Upstream, query: Buffer, id: number, timeoutMs: number): Promise<Buffer> {
    const sock = this.opts.tcp.connectTcp({ host: server.address, port: server.port });
    return await new Promise<Buffer>((resolve, reject) => {
      let buffered: Buffer = Buffer.alloc(0);
      const done = (err: Error | undefined, res?: Buffer): void => {
        clearTimeout(timer);
        sock.removeAllListeners("data");
        sock.destroy();
        if (err !== undefined) reject(err);
        else resolve(res as Buffer);
      };
      const timer = setTimeout(() => done(new DnsUpstreamError(`${formatUpstream(server)} (tcp): no answer within ${timeoutMs} ms`)), timeoutMs);
      sock.on("error", (err) => done(new DnsUpstreamError(`${formatUpstream(server)} (tcp): ${err.message}`, { cause: err })));
      sock.on("close", () => done(new DnsUpstreamError(`${formatUpstream(server)} (tcp): closed before answering`)));
      sock.on("connect", () => writeFramed(sock, query));
      sock.on("data", (chunk: Buffer) => {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        for (;;) {
          if (buffered.length < 2) return;
          const len = buffered.readUInt16BE(0);
          if (buffered.length < 2 + len) return;
          const msg = buffered.subarray(2, 2 + len);
          buffered = buffered.subarray(2 + len);
          if (answersId(msg, id)) {
            done(undefined, Buffer.from(msg));
            return;
          }
        }
      });
    });
  }
}

export function writeFramed(sock: Socket, msg: Buffer): boolean {
  if (msg.length > MAX_TCP_MESSAGE) throw new RangeError(`a DNS message over TCP is at most ${MAX_TCP_MESSAGE} bytes, got ${msg.length}`);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length, 0);
  return sock.write(Buffer.concat([len, msg]));
}

function closeQuietly(s: DgramSocket): void {
  try {
    s.close();
  } catch {
    // already closed
  }
}
