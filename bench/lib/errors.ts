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

/**
 * One line saying why a child failed, from an error text that may end with its log: the
 * first line, plus the first pino record's `err`/`msg` when the first line alone says little.
 */
export function shortReason(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const head = lines[0] ?? "unknown error";
  for (const line of lines.slice(1)) {
    if (!line.startsWith("{")) continue;
    try {
      const rec = JSON.parse(line) as { err?: unknown; msg?: unknown; level?: unknown };
      const why = typeof rec.err === "string" ? rec.err : typeof rec.msg === "string" ? rec.msg : undefined;
      if (why !== undefined && (rec.level === "error" || rec.level === "fatal" || rec.level === 50 || rec.level === 60)) return `${head} ${why}`.slice(0, 300);
    } catch {
      // a partial line of the child's log
    }
  }
  return head.slice(0, 300);
}
