import { AmbientError } from "../../shared/errors.js";

export type XdsErrorCode = "XDS_TOKEN" | "XDS_ROOT_CA" | "XDS_STREAM" | "XDS_RESOURCE" | "CA_REQUEST" | "CA_RESPONSE";

/** An istiod xDS or CA problem, with what to check. */
export class XdsError extends AmbientError {
  constructor(code: XdsErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** A resource we cannot accept: NACKed with its name, the previous version stays. */
export class ResourceError extends AmbientError {
  constructor(
    readonly resource: string,
    /** Why, without the resource name (what the NACK lists next to the name). */
    readonly reason: string,
  ) {
    super("XDS_RESOURCE", `${resource}: ${reason}`);
  }
}
