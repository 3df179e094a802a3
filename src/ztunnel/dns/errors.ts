import { AmbientError } from "../../shared/errors.js";

/** No upstream resolver answered in time (or at all); the client gets SERVFAIL. */
export class DnsUpstreamError extends AmbientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("DNS_UPSTREAM_FAILED", message, options);
  }
}

/** The DNS proxy's configuration cannot be used (no upstream resolvers, unreadable resolv.conf). */
export class DnsConfigError extends AmbientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("DNS_CONFIG_INVALID", message, options);
  }
}
