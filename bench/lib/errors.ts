import { AmbientError } from "../../src/shared/errors.js";

/** A benchmark step that could not run or produced no usable result. */
export class BenchError extends AmbientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("BENCH", message, options);
  }
}

/** A command line the harness does not understand; the message says what is accepted. */
export class BenchUsageError extends AmbientError {
  constructor(message: string) {
    super("BENCH_USAGE", message);
  }
}
