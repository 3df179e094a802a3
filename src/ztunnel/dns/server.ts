import type { Socket as DgramSocket, RemoteInfo } from "node:dgram";
import type { Server, Socket } from "node:net";
import type { Logger } from "../../shared/log.js";
import { udpSocket } from "../../sockets/index.js";
import type { NetnsHandle } from "../../native/index.js";
import type { SocketFactory } from "../../sockets/socket-factory.js";
import { ConnectionLimiter, guardAcceptErrors, type ThrottledLog } from "../proxy/limits.js";
import type { DnsHandler } from "./handler.js";
import { writeFramed } from "./transport.js";

// The DNS listeners of one pod on one worker: UDP and TCP on 15053 inside the pod's netns,
// SO_REUSEPORT (every worker binds its own) and marked like the other listeners. They bind the
// loopback addresses, as ztunnel's do: the pod's REDIRECT rule rewrites a query's destination to
// 127.0.0.1 (::1), and a UDP reply must leave from that address for conntrack to map it back to
// the resolver the client asked (a wildcard socket would answer from the pod IP, which the
// client drops). UDP datagrams and TCP length-prefixed messages go through the same handler;
// TCP connections are capped, idle ones closed, and pipelined queries limited per connection.

const PIPELINE_PER_CONNECTION = 16;

export interface DnsListenerSpec {
  readonly netns: NetnsHandle;
  readonly mark: number;
  readonly reusePort: boolean;
  /** "127.0.0.1", and "::1" when IPv6 is on. */
  readonly addresses: readonly string[];
  /** Addresses that may be missing in the pod (::1 when its lo has IPv6 disabled): skipped. */
  readonly optional: readonly string[];
  readonly port: number;
  /** TCP listeners come from the pod's socket factory like every other listener. */
  readonly factory: SocketFactory;
  readonly maxTcpConnections: number;
  readonly tcpIdleMs: number;
}

export interface BoundListener {
  readonly address: string;
  readonly port: number;
  readonly protocol: "UDP" | "TCP";
}

export class DnsServer {
  private readonly udp = new Set<DgramSocket>();
  private readonly tcp = new Set<Server>();
  private readonly conns = new Set<Socket>();
  private readonly limiter: ConnectionLimiter;
  private closed = false;

  constructor(
    private readonly spec: DnsListenerSpec,
    private readonly handler: DnsHandler,
    private readonly throttled: ThrottledLog,
    private readonly log: Logger,
  ) {
    this.limiter = new ConnectionLimiter(spec.maxTcpConnections);
  }

  /** Binds every listener; on failure nothing stays open. */
  async start(): Promise<BoundListener[]> {
    const out: BoundListener[] = [];
    try {
      for (const address of this.spec.addresses) {
        try {
          out.push(...(await this.bind(address)));
        } catch (err) {
          if (!this.spec.optional.includes(address) || (err as NodeJS.ErrnoException).code !== "EADDRNOTAVAIL") throw err;
          this.log.info({ address }, "no such address in the pod (IPv6 off on its lo?): DNS over it is not served");
        }
      }
      return out;
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  private async bind(address: string): Promise<BoundListener[]> {
    const { spec } = this;
    const family = address.includes(":") ? 6 : 4;
    const udp = await udpSocket({ netns: spec.netns, family, mark: spec.mark, reusePort: spec.reusePort, bind: { address, port: spec.port } });
    this.udp.add(udp);
    udp.on("error", (err) => this.throttled.warn({ err: err.message }, "DNS UDP socket error"));
    udp.on("message", (msg, rinfo) => this.onDatagram(udp, msg, rinfo));
    const tcp = await spec.factory.listenTcp({ address, port: spec.port });
    this.tcp.add(tcp);
    guardAcceptErrors(tcp, this.throttled, "dns-tcp");
    tcp.on("connection", (s: Socket) => this.onConnection(s));
    const u = udp.address();
    const t = tcp.address();
    return [
      { address: u.address, port: u.port, protocol: "UDP" },
      { address: t !== null && typeof t === "object" ? t.address : address, port: t !== null && typeof t === "object" ? t.port : spec.port, protocol: "TCP" },
    ];
  }

  /** Stop taking queries (drain); queries in progress may still answer until close(). */
  stopAccepting(): void {
    for (const t of this.tcp) t.close();
    this.tcp.clear();
    this.closeUdp();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closeUdp();
    for (const s of this.conns) s.destroy();
    this.conns.clear();
    const servers = [...this.tcp];
    this.tcp.clear();
    await Promise.all(servers.map((t) => new Promise<void>((r) => t.close(() => r()))));
  }

  private closeUdp(): void {
    for (const udp of this.udp) {
      try {
        udp.close();
      } catch {
        // already closed
      }
    }
    this.udp.clear();
  }

  private onDatagram(udp: DgramSocket, msg: Buffer, rinfo: RemoteInfo): void {
    this.handler.handle(msg, "udp").then(
      (reply) => {
        if (reply === undefined || !this.udp.has(udp)) return;
        udp.send(reply, rinfo.port, rinfo.address, (err) => {
          if (err !== null && err !== undefined) this.throttled.warn({ err: err.message, to: rinfo.address }, "DNS UDP reply not sent");
        });
      },
      (err: unknown) => this.log.error({ err }, "DNS handler failed (bug): query dropped"),
    );
  }

  private onConnection(s: Socket): void {
    const release = this.closed ? undefined : this.limiter.tryAcquire();
    if (release === undefined) {
      this.throttled.warn({ max: this.limiter.max }, "DNS TCP connection limit of the pod reached; refusing connections");
      s.resetAndDestroy();
      return;
    }
    this.conns.add(s);
    s.setTimeout(this.spec.tcpIdleMs, () => s.destroy());
    s.on("error", () => s.destroy());
    s.once("close", () => {
      this.conns.delete(s);
      release();
    });
    let buffered: Buffer = Buffer.alloc(0);
    let pending = 0;
    s.on("data", (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2) {
        const len = buffered.readUInt16BE(0);
        if (buffered.length < 2 + len) break;
        const msg = Buffer.from(buffered.subarray(2, 2 + len));
        buffered = buffered.subarray(2 + len);
        pending++;
        if (pending >= PIPELINE_PER_CONNECTION) s.pause();
        this.handler.handle(msg, "tcp").then(
          (reply) => {
            if (reply !== undefined && !s.destroyed) writeFramed(s, reply);
          },
          (err: unknown) => this.log.error({ err }, "DNS handler failed (bug): query dropped"),
        ).finally(() => {
          pending--;
          if (pending < PIPELINE_PER_CONNECTION && s.isPaused() && !s.destroyed) s.resume();
        });
      }
    });
  }
}
