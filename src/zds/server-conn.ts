import type { Logger } from "../shared/log.js";
import { decodeHello, decodeResponse, encodeRequest, type ZdsRequest } from "./codec.js";
import { VERSION_V1 } from "./proto.js";
import { ZdsAckTimeoutError, ZdsConnectionClosedError, ZdsProtocolError, ZdsRejectedError } from "./errors.js";
import type { DatagramConn, NetnsOps } from "./transport.js";

export interface ServerConnTimers {
  helloTimeoutMs: number;
  ackTimeoutMs: number;
}

/** Sends one request and resolves with its Ack text ("" = success). */
export type SendFn = (req: ZdsRequest, what: string, fd?: number) => Promise<string>;

interface Job {
  exec(): Promise<void>;
  fail(err: Error): void;
}

interface PendingAck {
  what: string;
  resolve(error: string): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

type ConnState = { t: "awaitingHello"; timer: NodeJS.Timeout } | { t: "live" } | { t: "closed"; reason: string };

/**
 * The agent's end of one ztunnel connection: waits for the hello, then is the connection's
 * only sender, one request at a time, each waiting for its Ack within the deadline.
 */
export class ServerConnection {
  readonly id: number;
  private state: ConnState;
  private readonly queue: Job[] = [];
  private pumping = false;
  private pending: PendingAck | undefined;

  constructor(
    id: number,
    private readonly conn: DatagramConn,
    private readonly ops: NetnsOps,
    private readonly timers: ServerConnTimers,
    private readonly log: Logger,
    private readonly hooks: { live(c: ServerConnection): void; closed(c: ServerConnection, reason: string): void },
  ) {
    this.id = id;
    const timer = setTimeout(() => this.drop(`no ZdsHello within ${timers.helloTimeoutMs} ms`), timers.helloTimeoutMs);
    this.state = { t: "awaitingHello", timer };
    conn.attach({
      message: (data, fd) => this.onMessage(data, fd),
      datagramError: (err) => this.protocolError(new ZdsProtocolError(`unreadable datagram from ztunnel: ${err.message}`, { cause: err })),
      closed: (err) => this.drop(err ? `connection error: ${err.message}` : "ztunnel closed the connection"),
    });
  }

  get live(): boolean {
    return this.state.t === "live";
  }

  get isClosed(): boolean {
    return this.state.t === "closed";
  }

  /** Queues a request; resolves with the Ack's error text ("" = success). */
  request(req: ZdsRequest, what: string, fd?: number): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      this.enqueue({
        exec: async () => {
          try {
            resolve(await this.sendAndAwaitAck(req, what, fd));
          } catch (err) {
            reject(err as Error);
          }
        },
        fail: reject,
      });
    });
  }

  /** Queues a request and turns an error Ack into a ZdsRejectedError. */
  async requestOk(req: ZdsRequest, what: string, fd?: number): Promise<void> {
    const error = await this.request(req, what, fd);
    if (error !== "") throw new ZdsRejectedError(what, error);
  }

  /**
   * Queues work that runs in this connection's send order (the snapshot); while it runs it has
   * the connection to itself and sends through `send` (queued requests wait behind it).
   */
  runInOrder(work: (send: SendFn) => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.enqueue({
        exec: async () => {
          try {
            await work((req, what, fd) => this.sendAndAwaitAck(req, what, fd));
            resolve();
          } catch (err) {
            reject(err as Error);
          }
        },
        fail: reject,
      });
    });
  }

  close(reason = "closed by the agent"): void {
    this.drop(reason);
  }

  private enqueue(job: Job): void {
    if (this.state.t === "closed") {
      job.fail(new ZdsConnectionClosedError("the request", this.state.reason));
      return;
    }
    this.queue.push(job);
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && this.state.t !== "closed") {
        await this.queue.shift()!.exec();
      }
    } finally {
      this.pumping = false;
    }
  }

  private async sendAndAwaitAck(req: ZdsRequest, what: string, fd: number | undefined): Promise<string> {
    if (this.state.t === "closed") throw new ZdsConnectionClosedError(what, this.state.reason);
    const bytes = encodeRequest(req); // too large: fails this request only, nothing was sent
    const ack = new Promise<string>((resolve, reject) => {
      // Deviation from Istio, on purpose: on a timeout we drop the connection; Istio keeps it,
      // and then a late Ack would be taken as the answer to the next request.
      const timer = setTimeout(() => {
        this.failPending(new ZdsAckTimeoutError(what, this.timers.ackTimeoutMs));
        this.drop(`no Ack for ${what} within ${this.timers.ackTimeoutMs} ms`);
      }, this.timers.ackTimeoutMs);
      this.pending = { what, resolve, reject, timer };
    });
    this.conn.send(bytes, fd).catch((err: unknown) => {
      this.drop(`send of ${what} failed: ${err instanceof Error ? err.message : String(err)}`);
    });
    return await ack;
  }

  private failPending(err: Error): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    p.reject(err);
  }

  private onMessage(data: Buffer, fd: number | undefined): void {
    if (this.state.t === "closed") {
      if (fd !== undefined) this.ops.closeFd(fd);
      return;
    }
    if (fd !== undefined) {
      this.ops.closeFd(fd);
      this.protocolError(new ZdsProtocolError("ztunnel sent a file descriptor; ztunnel never sends fds"));
      return;
    }
    try {
      if (this.state.t === "awaitingHello") {
        const hello = decodeHello(data);
        if (hello.version !== VERSION_V1) throw new ZdsProtocolError(`unsupported ZdsHello version ${hello.version}; this agent speaks V1`);
        clearTimeout(this.state.timer);
        this.state = { t: "live" };
        this.log.info({ conn: this.id }, "ztunnel said hello");
        this.hooks.live(this);
        return;
      }
      const p = this.pending;
      if (!p) throw new ZdsProtocolError("ztunnel sent a message while no request was waiting for an Ack");
      const ack = decodeResponse(data);
      this.pending = undefined;
      clearTimeout(p.timer);
      p.resolve(ack.error);
    } catch (err) {
      const e = err instanceof ZdsProtocolError ? err : new ZdsProtocolError(String(err), { cause: err });
      this.protocolError(e);
    }
  }

  private protocolError(err: ZdsProtocolError): void {
    this.log.warn({ conn: this.id, err: err.message }, "ZDS protocol error from ztunnel; dropping the connection");
    this.drop(`protocol error: ${err.message}`);
  }

  private drop(reason: string): void {
    if (this.state.t === "closed") return;
    if (this.state.t === "awaitingHello") clearTimeout(this.state.timer);
    this.state = { t: "closed", reason };
    this.failPending(new ZdsConnectionClosedError(this.pending?.what ?? "the request", reason));
    for (const job of this.queue.splice(0)) job.fail(new ZdsConnectionClosedError("the request", reason));
    if (!this.conn.closed) this.conn.close();
    this.log.info({ conn: this.id, reason }, "ztunnel connection closed");
    this.hooks.closed(this, reason);
  }
}
