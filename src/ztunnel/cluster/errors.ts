import { AmbientError } from "../../shared/errors.js";

// Failures of cluster mode (state and certificates from the Kubernetes API), each with a
// stable code and a message that says what to do.

/** No usable state source could be chosen from the configuration. */
export class SourceSelectionError extends AmbientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ZTUNNEL_SOURCE_SELECTION", message, options);
  }
}

/** The informers could not list the cluster at start-up. */
export class KubeSyncError extends AmbientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ZTUNNEL_KUBE_SYNC", message, options);
  }
}

/** Kubernetes did not confirm (or contradicted) a pod named by a ZDS Add on this node. */
export class IdentityNotConfirmedError extends AmbientError {
  constructor(message: string) {
    super("ZTUNNEL_IDENTITY_NOT_CONFIRMED", message);
  }
}

/** A certificate was asked for an identity no pod on this node has. */
export class IdentityNotLocalError extends AmbientError {
  constructor(message: string) {
    super("ZTUNNEL_IDENTITY_NOT_LOCAL", message);
  }
}

/** HTTP status of a client-node failure: ApiException.code (lists) or Error.statusCode (watches). */
export function httpStatusOf(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const o = err as { code?: unknown; statusCode?: unknown };
  if (typeof o.statusCode === "number") return o.statusCode;
  if (typeof o.code === "number") return o.code;
  return undefined;
}

/** One short line for a client-node failure: "HTTP 403: <Status message>" (its own message embeds headers). */
export function describeKubeError(err: unknown): string {
  const status = httpStatusOf(err);
  if (status === undefined) return err instanceof Error ? err.message : String(err);
  let detail = err instanceof Error ? (err.message.split("\n")[0] ?? "") : "";
  const body = (err as { body?: unknown }).body;
  if (typeof body === "string") {
    try {
      const parsed = JSON.parse(body) as { message?: unknown };
      if (typeof parsed.message === "string") detail = parsed.message;
    } catch {
      // not a Status body: keep the first line of the message
    }
  }
  return `HTTP ${status}: ${detail}`;
}
