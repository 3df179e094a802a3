import type { H2Stream } from "../h2/stream.js";
import type { Logger } from "../../../shared/log.js";
import type { SocketFactory } from "../../../sockets/socket-factory.js";
import type { WorkloadCert } from "../../tls/ca.js";
import type { Identity } from "../../tls/identity.js";

// What callers of the HBONE client see: the request describing one tunnelled TCP connection,
// the pool's options and the stream they get back.

export interface CertSource {
  get(identity: Identity): Promise<WorkloadCert>;
}

export interface HostPort {
  readonly ip: string;
  readonly port: number;
}

export interface HboneRequest {
  /** Source pod uid; part of the pool key. */
  readonly sourcePodUid: string;
  readonly sourceIdentity: Identity;
  /** Sockets for the source pod (its netns); part of the connection, not the key. */
  readonly socketFactory: SocketFactory;
  /** The server's URI SAN must be one of these. */
  readonly destinationIdentities: readonly Identity[];
  /** Where HBONE is spoken: `<pod ip>:15008`. */
  readonly hboneAddress: HostPort;
  /** The original destination; becomes `:authority`. */
  readonly target: HostPort;
  /** The original client, for `forwarded: for=`. */
  readonly client: HostPort;
  /** Service hostname when the client addressed a service (`;host=` in forwarded). */
  readonly serviceHost?: string;
  readonly traceparent?: string;
  readonly baggage?: string;
}

export interface HboneClientOptions {
  certs: CertSource;
  maxStreamsPerConnection?: number;
  /** A pooled connection without streams for this long is closed (POOL_UNUSED_RELEASE_TIMEOUT). */
  idleTimeoutMs?: number;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** TCP connect + TLS handshake + HTTP/2 setup. */
  handshakeTimeoutMs?: number;
  maxHeaderListSize?: number;
  log?: Logger;
}

export interface HboneStream {
  readonly stream: H2Stream;
  /** The response headers (name → value). */
  readonly headers: Readonly<Record<string, string>>;
  /** Which pooled connection carries it (tests and metrics). */
  readonly connectionId: number;
}
