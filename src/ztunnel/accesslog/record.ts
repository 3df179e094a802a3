import { formatIdentity, type Identity } from "../tls/identity.js";

// One access-log record per completed connection, with ztunnel's field names (DESIGN §9). The
// data path fills a ConnectionSummary — plain data, posted from the worker as is; the record
// (identity URIs, the duration string) is only built where and when the line is written.

export type Direction = "inbound" | "outbound";

export interface ConnectionSummary {
  readonly direction: Direction;
  /** "ip:port" of the connection's client (IPv6 in brackets). */
  readonly srcAddr: string;
  readonly srcWorkload?: string | undefined;
  readonly srcNamespace?: string | undefined;
  /** The mTLS peer identity; undefined on plaintext. */
  readonly srcIdentity?: Identity | string | undefined;
  /** The original destination "ip:port". */
  readonly dstAddr: string;
  /** The HBONE tunnel endpoint "ip:15008" when tunnelled. */
  readonly dstHboneAddr?: string | undefined;
  /** Service hostname when the client addressed a service VIP. */
  readonly dstService?: string | undefined;
  readonly dstWorkload?: string | undefined;
  readonly dstNamespace?: string | undefined;
  readonly dstIdentity?: Identity | string | undefined;
  /** Payload bytes source → destination. */
  readonly bytesSent: number;
  /** Payload bytes destination → source. */
  readonly bytesRecv: number;
  readonly durationMs: number;
  /** Why the connection failed; undefined on success. */
  readonly error?: string | undefined;
  /** Istio response flag of a failure (DENY, UF, …). */
  readonly responseFlags?: string | undefined;
  /** Plaintext paths: which relay copied the bytes ("kernel" = splice, "js"); undefined on HBONE. */
  readonly relay?: "kernel" | "js" | undefined;
}

export interface AccessRecord {
  readonly "src.addr": string;
  readonly "src.workload": string | undefined;
  readonly "src.namespace": string | undefined;
  readonly "src.identity": string | undefined;
  readonly "dst.addr": string;
  readonly "dst.hbone_addr": string | undefined;
  readonly "dst.service": string | undefined;
  readonly "dst.workload": string | undefined;
  readonly "dst.namespace": string | undefined;
  readonly "dst.identity": string | undefined;
  readonly direction: Direction;
  readonly bytes_sent: number;
  readonly bytes_recv: number;
  /** ztunnel's format: "<n>ms". */
  readonly duration: string;
  readonly error: string | undefined;
  readonly response_flags: string | undefined;
  /** Not a ztunnel field: which relay carried a plaintext connection. */
  readonly relay: "kernel" | "js" | undefined;
}

/** Undefined fields are left out of the JSON line by pino. */
export function toAccessRecord(s: ConnectionSummary): AccessRecord {
  return {
    "src.addr": s.srcAddr,
    "src.workload": s.srcWorkload,
    "src.namespace": s.srcNamespace,
    "src.identity": identity(s.srcIdentity),
    "dst.addr": s.dstAddr,
    "dst.hbone_addr": s.dstHboneAddr,
    "dst.service": s.dstService,
    "dst.workload": s.dstWorkload,
    "dst.namespace": s.dstNamespace,
    "dst.identity": identity(s.dstIdentity),
    direction: s.direction,
    bytes_sent: s.bytesSent,
    bytes_recv: s.bytesRecv,
    duration: `${Math.max(0, Math.round(s.durationMs))}ms`,
    error: s.error,
    response_flags: s.responseFlags,
    relay: s.relay,
  };
}

function identity(id: Identity | string | undefined): string | undefined {
  if (id === undefined || typeof id === "string") return id === "" ? undefined : id;
  return formatIdentity(id);
}
