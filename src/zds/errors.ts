import { AmbientError } from "../shared/errors.js";

// One class per ZDS failure, each with a stable code, so the agent can decide to retry
// (no connection, timeout, closed) or to report (rejected by ztunnel, bad input).
export class ZdsError extends AmbientError {}

/** The peer broke the protocol (bad bytes, wrong message for the state, stray fd). */
export class ZdsProtocolError extends ZdsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_ZDS_PROTOCOL", message, options);
  }
}

/** A message would not fit into one 1024-byte datagram. */
export class ZdsMessageTooLargeError extends ZdsError {
  constructor(what: string, size: number, max: number) {
    super("ERR_ZDS_TOO_LARGE", `${what} is ${size} bytes, above the ZDS datagram limit of ${max} bytes; shorten the pod's uid, name, namespace or service account`);
  }
}

/** podAdded while no ztunnel is connected: the caller should retry later. */
export class ZdsNoConnectionError extends ZdsError {
  constructor() {
    super("ERR_ZDS_NO_CONNECTION", "no ztunnel connection: ztunnel is not connected to the ZDS socket yet; retry when it connects");
  }
}

/** ztunnel did not ack within the deadline; the connection has been dropped. */
export class ZdsAckTimeoutError extends ZdsError {
  constructor(what: string, timeoutMs: number) {
    super("ERR_ZDS_ACK_TIMEOUT", `ztunnel did not acknowledge ${what} within ${timeoutMs} ms; the connection was dropped and ztunnel will reconnect`);
  }
}

/** ztunnel answered with an error Ack (for example its proxy failed to start). */
export class ZdsRejectedError extends ZdsError {
  readonly ackError: string;
  constructor(what: string, ackError: string) {
    super("ERR_ZDS_REJECTED", `ztunnel rejected ${what}: ${ackError}`);
    this.ackError = ackError;
  }
}

/** The connection went away before the request was acknowledged. */
export class ZdsConnectionClosedError extends ZdsError {
  constructor(what: string, reason: string) {
    super("ERR_ZDS_CONNECTION_CLOSED", `ztunnel connection closed before ${what} was acknowledged (${reason}); retry`);
  }
}

/** Misconfiguration of a ZDS server or client (unknown option, bad value, unusable socket path). */
export class ZdsConfigError extends ZdsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_ZDS_CONFIG", message, options);
  }
}
