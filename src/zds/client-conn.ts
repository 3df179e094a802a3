import type { Logger } from "../shared/log.js";
import { errorMessage } from "../shared/errors.js";
import { decodeRequest, encodeAck, encodeHello, type ZdsRequest } from "./codec.js";
import { ZdsProtocolError } from "./errors.js";
import type { DatagramConn, NetnsOps, NetnsRef } from "./transport.js";
import type { WorkloadState } from "./workload-state.js";

type Item = { t: "message"; data: Buffer; fd: number | undefined } | { t: "datagramError"; err: Error };

/**
 * ztunnel's end of one connection: says hello, then answers every request with exactly one
 * Ack, in order. A protocol error is answered with an error Ack, then the connection closes.
 */
export class ClientSession<H extends NetnsRef> {
  private readonly queue: Item[] = [];
  private pumping = false;
  private ended = false;
  readonly done: Promise<string>;
  private finish!: (reason: string) => void;

  constructor(
    private readonly conn: DatagramConn,
    private readonly ops: NetnsOps<H>,
    private readonly state: WorkloadState<H>,
    private readonly log: Logger,
    private readonly hooks: { protocolError(err: ZdsProtocolError): void; snapshot(): void },
  ) {
    this.done = new Promise<string>((resolve) => (this.finish = resolve));
  }

  start(): void {
    void this.state.newConnection();
    this.conn.attach({
      message: (data, fd) => this.push({ t: "message", data, fd }),
      datagramError: (err) => this.push({ t: "datagramError", err }),
      closed: (err) => this.end(err ? `connection error: ${err.message}` : "node agent closed the connection"),
    });
    this.conn.send(encodeHello()).catch((err: unknown) => this.end(`sending ZdsHello failed: ${errorMessage(err)}`));
  }

  close(reason = "closed by ztunnel"): void {
    this.end(reason);
  }

  private push(item: Item): void {
    if (this.ended) {
      if (item.t === "message" && item.fd !== undefined) this.ops.closeFd(item.fd);
      return;
    }
    this.queue.push(item);
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.ended) {
        const item = this.queue.shift()!;
        let ack: string;
        try {
          ack = await this.handle(item);
        } catch (err) {
          const pe = err instanceof ZdsProtocolError ? err : new ZdsProtocolError(errorMessage(err), { cause: err });
          await this.protocolError(pe);
          return;
        }
        try {
          await this.conn.send(encodeAck(ack));
        } catch (err) {
          this.end(`sending an Ack failed: ${errorMessage(err)}`);
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Handles one datagram; returns the Ack text or throws a ZdsProtocolError. Owns item.fd. */
  private async handle(item: Item): Promise<string> {
    if (item.t === "datagramError") throw new ZdsProtocolError(`unreadable datagram from the node agent: ${item.err.message}`);
    let fd = item.fd;
    try {
      const req: ZdsRequest = decodeRequest(item.data);
      if (req.type !== "add" && fd !== undefined) throw new ZdsProtocolError(`${req.type} request carried a file descriptor; only Add carries one`);
      if (req.type !== "snapshotSent" && req.uid === "") throw new ZdsProtocolError(`${req.type} request without a uid`);
      switch (req.type) {
        case "add": {
          if (fd === undefined) throw new ZdsProtocolError(`Add for pod ${req.uid} arrived without a netns file descriptor`);
          if (req.info === undefined) throw new ZdsProtocolError(`Add for pod ${req.uid} without workload_info`);
          let netns: H;
          try {
            netns = this.ops.adopt(fd);
          } catch (err) {
            // The stream is intact, only this pod's fd is wrong: an error Ack, not a close.
            return `fd received with Add for pod ${req.uid} is not a network namespace: ${errorMessage(err)}`;
          }
          fd = undefined; // owned by the handle now
          return await this.state.add(req.uid, req.info, netns);
        }
        case "keep":
          return await this.state.keep(req.uid);
        case "del":
          return await this.state.del(req.uid);
        default: {
          const ack = await this.state.snapshotSent();
          this.hooks.snapshot();
          return ack;
        }
      }
    } finally {
      if (fd !== undefined) this.ops.closeFd(fd);
    }
  }

  private async protocolError(err: ZdsProtocolError): Promise<void> {
    // Deviation from Istio, on purpose: Istio's ztunnel stops its workload manager on a protocol
    // error; ours answers with an error Ack, closes, and reconnects for a fresh snapshot.
    this.log.error({ err: err.message }, "ZDS protocol error from the node agent; closing the connection to reconnect");
    this.hooks.protocolError(err);
    try {
      await this.conn.send(encodeAck(`protocol error: ${err.message}`));
    } catch {
      // The connection is already gone; closing below is all that is left.
    }
    this.end(`protocol error: ${err.message}`);
  }

  private end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    for (const item of this.queue.splice(0)) if (item.t === "message" && item.fd !== undefined) this.ops.closeFd(item.fd);
    if (!this.conn.closed) this.conn.close();
    this.finish(reason);
  }
}
