import { AmbientError } from "../../src/shared/errors.js";

// Error codes from the CNI specification (SPEC.md "Error" section); 999 is ours.
export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnv: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  Internal: 999,
} as const;

export type CniCodeValue = (typeof CniCode)[keyof typeof CniCode];

/** A failure the plugin reports to the runtime as a CNI error object on stdout. */
export class CniError extends AmbientError {
  readonly cniCode: CniCodeValue;
  readonly details: string;

  constructor(cniCode: CniCodeValue, message: string, details = "", options?: { cause?: unknown }) {
    super(`CNI_${cniCode}`, message, options);
    this.cniCode = cniCode;
    this.details = details;
  }
}

export interface CniErrorObject {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export function toErrorObject(err: CniError, cniVersion: string): CniErrorObject {
  const obj: CniErrorObject = { cniVersion, code: err.cniCode, msg: err.message };
  if (err.details !== "") obj.details = err.details;
  return obj;
}
