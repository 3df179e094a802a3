import { AmbientError } from "../../../src/shared/errors.js";
import type { ResourceInfo } from "./resources.js";

// Every failure leaves the fake as a metav1.Status, shaped like the real API server's, so the
// client's error paths (ApiException.code/body, the informer's 410 handling) run for real.

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  causes?: { reason?: string; message: string; field?: string }[];
}

export interface StatusObject {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure" | "Success";
  message: string;
  reason: string;
  details?: StatusDetails;
  code: number;
}

export class ApiError extends AmbientError {
  readonly httpStatus: number;
  readonly reason: string;
  readonly details: StatusDetails | undefined;

  constructor(httpStatus: number, reason: string, message: string, details?: StatusDetails) {
    super(`FAKE_KUBE_${reason.toUpperCase()}`, message);
    this.httpStatus = httpStatus;
    this.reason = reason;
    this.details = details;
  }

  toStatus(): StatusObject {
    return statusObject(this.httpStatus, this.reason, this.message, this.details);
  }
}

export function statusObject(code: number, reason: string, message: string, details?: StatusDetails): StatusObject {
  const s: StatusObject = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
  if (details !== undefined) s.details = details;
  return s;
}

/** Resource as the API server names it in messages: `pods`, `endpointslices.discovery.k8s.io`. */
function qualified(r: ResourceInfo): string {
  return r.group === "" ? r.plural : `${r.plural}.${r.group}`;
}

function details(r: ResourceInfo, name: string): StatusDetails {
  const d: StatusDetails = { name, kind: r.plural };
  if (r.group !== "") d.group = r.group;
  return d;
}

export const errors = {
  notFound(r: ResourceInfo, name: string): ApiError {
    return new ApiError(404, "NotFound", `${qualified(r)} "${name}" not found`, details(r, name));
  },
  alreadyExists(r: ResourceInfo, name: string): ApiError {
    return new ApiError(409, "AlreadyExists", `${qualified(r)} "${name}" already exists`, details(r, name));
  },
  conflict(r: ResourceInfo, name: string, why = "the object has been modified; please apply your changes to the latest version and try again"): ApiError {
    return new ApiError(409, "Conflict", `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${why}`, details(r, name));
  },
  invalid(r: ResourceInfo, name: string, field: string, message: string): ApiError {
    const d = details(r, name);
    d.kind = r.kind;
    d.causes = [{ reason: "FieldValueInvalid", message, field }];
    return new ApiError(422, "Invalid", `${r.kind} "${name}" is invalid: ${field}: ${message}`, d);
  },
  badRequest(message: string): ApiError {
    return new ApiError(400, "BadRequest", message);
  },
  unsupportedMediaType(contentType: string): ApiError {
    return new ApiError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got ${contentType || "none"})`);
  },
  methodNotAllowed(method: string): ApiError {
    return new ApiError(405, "MethodNotAllowed", `the server does not allow this method on the requested resource (${method})`);
  },
  noSuchPath(): ApiError {
    return new ApiError(404, "NotFound", "the server could not find the requested resource");
  },
  unauthorized(): ApiError {
    return new ApiError(401, "Unauthorized", "Unauthorized");
  },
  expired(requested: number, oldest: number): ApiError {
    return new ApiError(410, "Expired", `too old resource version: ${requested} (${oldest})`);
  },
};

/** Reason the real API server uses for a status code, for failures injected by a test. */
export function reasonForCode(code: number): string {
  const reasons: Record<number, string> = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
  };
  return reasons[code] ?? "Unknown";
}
