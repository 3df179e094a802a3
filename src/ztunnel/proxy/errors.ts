import { AmbientError } from "../../shared/errors.js";

// Every way a proxied connection can fail, with the HTTP status the HBONE server answers and
// the Istio response flag that metrics and access logs carry. One table, one place.

export type ProxyErrorCode =
  | "BAD_REQUEST"
  | "LOOP_DETECTED"
  | "AUTHORIZATION_DENIED"
  | "UPSTREAM_CONNECT_FAILED"
  | "NO_HEALTHY_UPSTREAM"
  | "UNKNOWN_DESTINATION"
  | "HBONE_HANDSHAKE_FAILED"
  | "HBONE_HANDSHAKE_TIMEOUT"
  | "HBONE_PEER_IDENTITY"
  | "HBONE_STATUS"
  | "HBONE_STREAM_RESET"
  | "CONNECTION_LIMIT"
  | "IDLE_TIMEOUT"
  | "HALF_CLOSE_TIMEOUT"
  | "POOL_CLOSED";

interface Mapping {
  /** HTTP status on the HBONE CONNECT response (inbound side). */
  readonly status: number;
  /** Istio/Envoy response flag. */
  readonly flag: string;
}

const TABLE: Readonly<Record<ProxyErrorCode, Mapping>> = {
  BAD_REQUEST: { status: 400, flag: "DPE" },
  // A destination that is ztunnel itself: refused before any socket is opened.
  LOOP_DETECTED: { status: 400, flag: "DPE" },
  AUTHORIZATION_DENIED: { status: 401, flag: "DENY" },
  UPSTREAM_CONNECT_FAILED: { status: 503, flag: "UF" },
  NO_HEALTHY_UPSTREAM: { status: 503, flag: "UH" },
  UNKNOWN_DESTINATION: { status: 503, flag: "NR" },
  HBONE_HANDSHAKE_FAILED: { status: 503, flag: "UF" },
  HBONE_HANDSHAKE_TIMEOUT: { status: 503, flag: "UF" },
  HBONE_PEER_IDENTITY: { status: 503, flag: "UF" },
  HBONE_STATUS: { status: 503, flag: "UF" },
  HBONE_STREAM_RESET: { status: 503, flag: "UC" },
  CONNECTION_LIMIT: { status: 503, flag: "UO" },
  IDLE_TIMEOUT: { status: 504, flag: "SI" },
  HALF_CLOSE_TIMEOUT: { status: 504, flag: "SI" },
  POOL_CLOSED: { status: 503, flag: "UF" },
};

export class ProxyError extends AmbientError {
  declare readonly code: ProxyErrorCode;
  /** For HBONE_STATUS: the status the peer answered. */
  readonly peerStatus: number | undefined;

  constructor(code: ProxyErrorCode, message: string, options?: { cause?: unknown; peerStatus?: number }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.peerStatus = options?.peerStatus;
  }

  get status(): number {
    return TABLE[this.code].status;
  }

  get responseFlag(): string {
    return TABLE[this.code].flag;
  }
}

export function statusOf(code: ProxyErrorCode): number {
  return TABLE[code].status;
}

export function responseFlagOf(code: ProxyErrorCode): string {
  return TABLE[code].flag;
}

const CONNECT_ERRNOS = new Set(["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "EADDRNOTAVAIL", "EADDRINUSE", "EPIPE"]);

/** Maps an upstream connect failure (walking `cause`) to UPSTREAM_CONNECT_FAILED. */
export function upstreamConnectError(err: unknown, target: string): ProxyError {
  const errno = errnoOf(err);
  const detail = errno !== undefined && CONNECT_ERRNOS.has(errno) ? errno : err instanceof Error ? err.message : String(err);
  return new ProxyError("UPSTREAM_CONNECT_FAILED", `connecting to ${target} failed: ${detail}`, { cause: err });
}

/** The first errno-like `code` found along an error's cause chain. */
export function errnoOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code;
  }
  return undefined;
}
