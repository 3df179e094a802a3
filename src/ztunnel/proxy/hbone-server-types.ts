import type { Socket } from "node:net";
import type { AuthzDecision } from "../authz/types.js";
import type { Logger } from "../../shared/log.js";
import type { SocketFactory } from "../../sockets/socket-factory.js";
import type { WorkloadCert } from "../tls/ca.js";
import type { Identity } from "../tls/identity.js";
import type { PodAdmission } from "./budget.js";
import type { ProxyError } from "./errors.js";
import type { RelayOptions, RelayResult } from "./relay.js";

// The HBONE server's contract with the rest of ztunnel (hbone-server.ts): what it is given
// (options, certificates, the authorizer) and what it reports (records, open streams).

/** Ports a CONNECT may never target: ztunnel's own listeners (loop protection). */
export const LOOP_PORTS: ReadonlySet<number> = new Set([15001, 15006, 15008]);

export interface AuthorizationContext {
  readonly source: Identity;
  readonly sourceIp: string;
  readonly destination: { readonly ip: string; readonly port: number };
}

/** The one decision type of the policy engine (authz/types.ts). */
export type AuthorizationDecision = AuthzDecision;

/** Where authorization policies plug in; the default allows everything. */
export interface Authorizer {
  authorize(ctx: AuthorizationContext): AuthorizationDecision | Promise<AuthorizationDecision>;
}

export interface CertProvider {
  get(identity: Identity): Promise<WorkloadCert>;
  onRenew?(identity: Identity, listener: (cert: WorkloadCert) => void): () => void;
}

export interface InboundRecord {
  readonly source: Identity;
  /** The peer's canonical IP, and with its port as `ip:port` / `[ip]:port`. */
  readonly sourceIp: string;
  readonly sourceAddr: string;
  readonly destination: string;
  readonly status: number;
  readonly error: ProxyError | undefined;
  readonly result: RelayResult | undefined;
  /** The object onOpen got, when the CONNECT was accepted and relayed. */
  readonly stream?: OpenStream;
}

export interface OpenStream extends AuthorizationContext {
  readonly sourcePort: number;
  readonly authority: string;
  abort(reason: string): void;
}

export interface HboneServerOptions {
  /** The pod's identity (its certificate is served). */
  identity: Identity;
  certs: CertProvider;
  /** The pod's own IPs: the only valid CONNECT destinations. */
  podIps: readonly string[];
  /** Sockets for the pod (listener and upstream connections live in its netns). */
  socketFactory: SocketFactory;
  listen: { address: string; port: number };
  authorizer?: Authorizer;
  /** Bind the upstream connection to the HBONE peer's IP (source preservation). Default true. */
  preserveSource?: boolean;
  maxConnections?: number;
  /** The pod's share of the worker's fd budget: connections, upstreams, pending handshakes. */
  admission?: PodAdmission;
  handshakeTimeoutMs?: number;
  /** Connecting to the app; past it the CONNECT is answered 503. Default 10 s. */
  upstreamConnectTimeoutMs?: number;
  maxHeaderListSize?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS per HBONE connection (default 1000): a client that
   * wants more opens another connection, which the per-pod connection cap then bounds. */
  maxConcurrentStreams?: number;
  relay?: RelayOptions;
  /** Called once per CONNECT after it ends (access log, metrics). */
  onRecord?: (rec: InboundRecord) => void;
  /**
   * Called when a CONNECT is relaying; `abort` ends it (a policy change denied it). The returned
   * function is called when the stream ends.
   */
  onOpen?: (stream: OpenStream) => () => void;
  /**
   * Where a freshly accepted connection is served: here (the returned function runs when it
   * closes) or by another worker (undefined: the placer closed it here). Default: here.
   */
  place?: (sock: Socket) => (() => void) | undefined;
  log?: Logger;
}
