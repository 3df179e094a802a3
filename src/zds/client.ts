import { EventEmitter } from "node:events";
import { logger, type Logger } from "../shared/log.js";
import { errorMessage } from "../shared/errors.js";
import { Backoff } from "./backoff.js";
import { ClientSession } from "./client-conn.js";
import { validateOptions } from "./options.js";
import { WorkloadState, type Readiness, type WorkloadProxyManager, type WorkloadSummary } from "./workload-state.js";
import type { DatagramConn, NetnsOps, NetnsRef } from "./transport.js";

export interface ZdsClientOptions {
  /** First reconnect delay; doubles per failed attempt (Istio: 10 ms). */
  initialBackoffMs: number;
  /** Reconnect delay cap (Istio: 15 s). */
  maxBackoffMs: number;
  /** Interval between retries of a proxy that failed to start (Istio: 5 s). */
  retryIntervalMs: number;
}

export const CLIENT_DEFAULTS: ZdsClientOptions = { initialBackoffMs: 10, maxBackoffMs: 15_000, retryIntervalMs: 5000 };

export interface ZdsClientEvents {
  connected: [];
  disconnected: [{ reason: string }];
  connectFailed: [{ error: string; retryInMs: number }];
  protocolError: [{ error: string }];
  snapshot: [];
  readiness: [Readiness];
}

/**
 * ztunnel's ZDS client: keeps one connection to the node agent (reconnecting with backoff) and
 * applies its requests to the workload proxies, which survive reconnects.
 */
export class ZdsClient<H extends NetnsRef = NetnsRef> extends EventEmitter<ZdsClientEvents> {
  private readonly opts: ZdsClientOptions;
  private readonly state: WorkloadState<H>;
  private readonly backoff: Backoff;
  private readonly log: Logger;
  private session: ClientSession<H> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private lastReady: boolean | undefined;

  constructor(
    private readonly connect: () => Promise<DatagramConn>,
    private readonly ops: NetnsOps<H>,
    manager: WorkloadProxyManager<H>,
    options?: Partial<ZdsClientOptions> & { random?: () => number; log?: Logger },
  ) {
    super();
    const { random, log, ...rest } = options ?? {};
    this.opts = validateOptions("ZdsClient", rest, CLIENT_DEFAULTS);
    this.log = log ?? logger("zds-client");
    this.backoff = new Backoff(this.opts.initialBackoffMs, this.opts.maxBackoffMs, random);
    this.state = new WorkloadState<H>(manager, this.opts.retryIntervalMs, this.log, () => this.readinessChanged());
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.attempt();
  }

  get connected(): boolean {
    return this.session !== undefined;
  }

  /** Ready = a snapshot was received and no proxy is pending; the reason names what is pending. */
  readiness(): Readiness {
    return this.state.readiness();
  }

  workloads(): WorkloadSummary[] {
    return this.state.workloads();
  }

  /** One pod's status (the state owns it; the proxy manager reports to it). */
  workload(uid: string): WorkloadSummary | undefined {
    return this.state.status(uid);
  }

  /** Running and not-running pod counts, for the gauges on every scrape. */
  counts(): { running: number; pending: number } {
    return this.state.counts();
  }

  /** Closes the connection, stops reconnecting, stops every proxy and closes every netns handle. */
  async close(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.session?.close("ztunnel shutting down");
    await this.state.close();
  }

  private async attempt(): Promise<void> {
    this.timer = undefined;
    if (!this.running) return;
    let conn: DatagramConn;
    try {
      conn = await this.connect();
    } catch (err) {
      this.scheduleReconnect(`connect failed: ${errorMessage(err)}`, true);
      return;
    }
    if (!this.running) {
      conn.close();
      return;
    }
    const session = new ClientSession<H>(conn, this.ops, this.state, this.log, {
      protocolError: (e) => this.emit("protocolError", { error: e.message }),
      snapshot: () => {
        this.backoff.reset(); // a snapshot proves the agent works: the next outage starts fast
        this.emit("snapshot");
      },
    });
    this.session = session;
    this.log.info("connected to the node agent");
    this.emit("connected");
    session.start();
    const reason = await session.done;
    if (this.session === session) this.session = undefined;
    this.log.warn({ reason }, "ZDS connection ended");
    this.emit("disconnected", { reason });
    this.scheduleReconnect(reason, false);
  }

  private scheduleReconnect(reason: string, failed: boolean): void {
    if (!this.running) return;
    const delay = this.backoff.next();
    if (failed) {
      this.log.debug({ reason, retryInMs: delay }, "cannot reach the node agent; retrying");
      this.emit("connectFailed", { error: reason, retryInMs: delay });
    }
    this.timer = setTimeout(() => void this.attempt(), delay);
  }

  private readinessChanged(): void {
    const r = this.state.readiness();
    if (r.ready !== this.lastReady) {
      this.lastReady = r.ready;
      this.emit("readiness", r);
    }
  }
}
