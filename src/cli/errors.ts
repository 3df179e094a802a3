import { AmbientError } from "../shared/errors.js";

// ambientctl's errors map to its exit codes: scripts can tell "the thing asked failed" (1) from
// "you called me wrong" (2) and "I could not reach it" (3).

export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class UsageError extends AmbientError {
  readonly exitCode: ExitCode = EXIT.usage;
  constructor(message: string) {
    super("CLI_USAGE", message);
  }
}

export class UnreachableError extends AmbientError {
  readonly exitCode: ExitCode = EXIT.unreachable;
  constructor(message: string, options?: { cause?: unknown }) {
    super("CLI_UNREACHABLE", message, options);
  }
}

export class CommandFailedError extends AmbientError {
  readonly exitCode: ExitCode = EXIT.failed;
  constructor(message: string, options?: { cause?: unknown }) {
    super("CLI_FAILED", message, options);
  }
}

export function exitCodeOf(err: unknown): ExitCode {
  if (err instanceof UsageError || err instanceof UnreachableError || err instanceof CommandFailedError) return err.exitCode;
  return EXIT.failed;
}
