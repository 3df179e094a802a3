import { Client, status as GrpcStatus, type ClientDuplexStream, type Metadata, type ServiceError } from "@grpc/grpc-js";
import { errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/log.js";
import type { GrpcChannel } from "./credentials.js";
import type { XdsMetricsSink } from "./metrics.js";
import { ADS_METHOD, decodeAs, encodeAs, xdsTypes } from "./proto.js";
import type { StructObject } from "./struct.js";

// The delta ADS stream to istiod (DESIGN §13): one wildcard subscription per type, every
// response ACKed (or NACKed naming what was refused) by its nonce, reconnect with jittered
// exponential backoff, and on reconnect the versions we hold so istiod sends only changes.
// State lives in the handler and survives disconnects: the proxy keeps working meanwhile.

export interface DeltaResource {
  readonly name: string;
  readonly version: string;
  /** The Any's type_url and payload; undefined when istiod sent a name only. */
  readonly typeUrl: string | undefined;
  readonly value: Buffer | undefined;
}

export interface DeltaResponse {
  readonly typeUrl: string;
  readonly nonce: string;
  readonly systemVersionInfo: string;
  readonly resources: readonly DeltaResource[];
  readonly removed: readonly string[];
}

export interface Rejection {
  readonly name: string;
  readonly reason: string;
}

/** Where responses go (the xDS state source). */
export interface DeltaHandler {
  /** Applies what it can; returns the resources it refused (they keep their previous version). */
  apply(response: DeltaResponse): readonly Rejection[];
  /** name → version of every resource held for a type, sent as initial_resource_versions. */
  versions(typeUrl: string): Record<string, string>;
}

export interface DeltaClientOptions {
  readonly target: string;
  readonly channel: GrpcChannel;
  /** Built per stream: the token may have rotated. Throws when the token is unusable. */
  readonly metadata: () => Metadata;
  readonly node: { readonly id: string; readonly cluster?: string; readonly metadata: StructObject };
  readonly typeUrls: readonly string[];
  readonly handler: DeltaHandler;
  readonly log: Logger;
  readonly metrics?: XdsMetricsSink;
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number };
  readonly random?: () => number;
  /** Named in errors when istiod refuses our credentials. */
  readonly tokenPath?: string;
}

export interface DeltaClientStatus {
  readonly connected: boolean;
  /** Types that have had their first response since start (readiness). */
  readonly synced: readonly string[];
  readonly lastError: string | undefined;
  readonly connects: number;
  readonly acks: number;
  readonly nacks: number;
  readonly lastNack: string | undefined;
}

type Stream = ClientDuplexStream<Buffer, { bytes: number; message: Record<string, unknown> }>;

export class DeltaXdsClient {
  private readonly client: Client;
  private stream: Stream | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private attempt = 0;
  private connected = false;
  private readonly synced = new Set<string>();
  private readonly syncWaiters: Array<() => void> = [];
  private lastError: string | undefined;
  private lastNack: string | undefined;
  private connects = 0;
  private acks = 0;
  private nacks = 0;

  constructor(private readonly opts: DeltaClientOptions) {
    this.client = new Client(opts.target, opts.channel.creds, opts.channel.options);
  }

  start(): void {
    this.connect();
  }

  status(): DeltaClientStatus {
    return {
      connected: this.connected,
      synced: [...this.synced],
      lastError: this.lastError,
      connects: this.connects,
      acks: this.acks,
      nacks: this.nacks,
      lastNack: this.lastNack,
    };
  }

  /** True once every type had a first response. */
  get ready(): boolean {
    return this.opts.typeUrls.every((t) => this.synced.has(t));
  }

  /** Resolves at the first full sync (every type answered once). */
  whenSynced(): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    const s = this.stream;
    this.stream = undefined;
    if (s !== undefined) {
      this.opts.metrics?.termination("Complete");
      s.cancel();
    }
    this.client.close();
  }

  private connect(): void {
    if (this.closed) return;
    let metadata: Metadata;
    try {
      metadata = this.opts.metadata();
    } catch (err) {
      this.fail(`cannot authenticate to istiod: ${errorMessage(err)}`, "ConnectionError");
      return;
    }
    const types = xdsTypes();
    const stream: Stream = this.client.makeBidiStreamRequest(
      ADS_METHOD,
      (req: Buffer) => req,
      (bytes: Buffer) => ({ bytes: bytes.length, message: decodeAs(types.deltaResponse, bytes) }),
      metadata,
    );
    this.stream = stream;
    let received = false;
    stream.on("data", (d: { bytes: number; message: Record<string, unknown> }) => {
      if (this.stream !== stream) return;
      if (!received) {
        received = true;
        // A stream that delivered data counts as a success: the next failure starts over.
        this.attempt = 0;
        this.connected = true;
        this.connects++;
        this.lastError = undefined;
      }
      this.onResponse(stream, d.bytes, d.message);
    });
    stream.on("error", (err: ServiceError) => {
      if (this.stream !== stream) return;
      const reason = err.code === GrpcStatus.UNAVAILABLE && !received ? "ConnectionError" : "Error";
      const hint = err.code === GrpcStatus.UNAUTHENTICATED && this.opts.tokenPath !== undefined ? ` (check the token in ${this.opts.tokenPath}: audience istio-ca, not expired)` : "";
      this.fail(`xDS stream to ${this.opts.target} failed: ${grpcMessage(err)}${hint}`, reason);
    });
    stream.on("end", () => {
      if (this.stream !== stream) return;
      // istiod ends streams routinely (every ~30 min): a reconnect, not an incident.
      this.fail(`istiod closed the xDS stream`, "Reconnect");
    });
    // First request per type: wildcard (no names), with what we hold so istiod skips it.
    this.opts.typeUrls.forEach((typeUrl, i) => {
      this.send(stream, {
        ...(i === 0 ? { node: this.opts.node } : {}),
        type_url: typeUrl,
        initial_resource_versions: this.opts.handler.versions(typeUrl),
      });
    });
  }

  private onResponse(stream: Stream, bytes: number, m: Record<string, unknown>): void {
    const response = toResponse(m);
    this.opts.metrics?.message(response.typeUrl, bytes);
    let rejected: readonly Rejection[];
    if (!this.opts.typeUrls.includes(response.typeUrl)) {
      rejected = [{ name: response.typeUrl, reason: "type not subscribed" }];
    } else {
      try {
        rejected = this.opts.handler.apply(response);
      } catch (err) {
        // The handler is meant to refuse per resource; anything else refuses the whole response.
        rejected = [{ name: "*", reason: `response not applied: ${errorMessage(err)}` }];
      }
    }
    if (rejected.length === 0) {
      this.acks++;
      this.send(stream, { type_url: response.typeUrl, response_nonce: response.nonce });
    } else {
      this.nacks++;
      const message = rejected.map((r) => `${r.name}: ${r.reason}`).join("; ");
      this.lastNack = message;
      this.opts.log.warn({ type: response.typeUrl, nonce: response.nonce, rejected: rejected.length, message }, "xDS resources rejected (NACK); keeping their previous state");
      // INVALID_ARGUMENT, as envoy reports a config it refused.
      this.send(stream, { type_url: response.typeUrl, response_nonce: response.nonce, error_detail: { code: GrpcStatus.INVALID_ARGUMENT, message } });
    }
    if (this.opts.typeUrls.includes(response.typeUrl) && !this.synced.has(response.typeUrl)) {
      this.synced.add(response.typeUrl);
      this.opts.log.info({ type: response.typeUrl, resources: response.resources.length }, "first xDS response for type");
      if (this.ready) for (const w of this.syncWaiters.splice(0)) w();
    }
  }

  private send(stream: Stream, req: Record<string, unknown>): void {
    try {
      stream.write(encodeAs(xdsTypes().deltaRequest, req));
    } catch (err) {
      this.opts.log.warn({ err: errorMessage(err) }, "xDS request not sent");
    }
  }

  private fail(message: string, reason: "ConnectionError" | "Error" | "Reconnect"): void {
    const s = this.stream;
    this.stream = undefined;
    s?.cancel();
    if (this.closed) return;
    this.opts.metrics?.termination(reason);
    const wasConnected = this.connected;
    this.connected = false;
    this.lastError = message;
    const { baseMs, maxMs } = this.opts.backoff ?? { baseMs: 200, maxMs: 15_000 };
    // Full jitter: many ztunnels restarted with istiod must not reconnect in step.
    const cap = Math.min(maxMs, baseMs * 2 ** Math.min(this.attempt, 16));
    const delay = Math.round(cap / 2 + (this.opts.random ?? Math.random)() * (cap / 2));
    this.attempt++;
    const level = reason === "Reconnect" ? "info" : "warn";
    this.opts.log[level]({ reason, delayMs: delay, wasConnected, err: message }, "xDS stream down; reconnecting (state kept)");
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

function grpcMessage(err: ServiceError): string {
  const name = Object.entries(GrpcStatus).find(([, v]) => v === err.code)?.[0] ?? String(err.code);
  return `${name}: ${err.details || err.message}`;
}

function toResponse(m: Record<string, unknown>): DeltaResponse {
  const str = (v: unknown): string => (typeof v === "string" ? v : "");
  const resources: DeltaResource[] = [];
  for (const r of Array.isArray(m.resources) ? (m.resources as unknown[]) : []) {
    const o = (r ?? {}) as Record<string, unknown>;
    const any = o.resource as { type_url?: unknown; value?: unknown } | undefined;
    resources.push({
      name: str(o.name),
      version: str(o.version),
      typeUrl: any === undefined ? undefined : str(any.type_url),
      value: any !== undefined && Buffer.isBuffer(any.value) ? any.value : any === undefined ? undefined : Buffer.alloc(0),
    });
  }
  return {
    typeUrl: str(m.type_url),
    nonce: str(m.nonce),
    systemVersionInfo: str(m.system_version_info),
    resources,
    removed: Array.isArray(m.removed_resources) ? (m.removed_resources as unknown[]).filter((x): x is string => typeof x === "string") : [],
  };
}
