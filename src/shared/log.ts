import { pino, type Logger, type LevelWithSilent } from "pino";

// Logging: JSON on stderr (stdout is reserved: the CNI plugin prints its result there, and the
// CLI prints tables). A binary's main builds the root logger once and hands each component a
// child with a `scope`; nothing builds a logger when a module is imported. LOG_LEVEL sets the
// level (the unit tests run with LOG_LEVEL=silent; a test that asserts on logs injects a
// capturing logger instead, see test/fixtures/log-capture.ts).

const LEVELS: ReadonlySet<string> = new Set(["trace", "debug", "info", "warn", "error", "fatal", "silent"]);

/** The level named by LOG_LEVEL, or info when it is unset or not a level. */
export function levelFromEnv(raw: string | undefined = process.env.LOG_LEVEL): LevelWithSilent {
  const v = raw?.trim().toLowerCase();
  return v !== undefined && LEVELS.has(v) ? (v as LevelWithSilent) : "info";
}

/** A process root logger on stderr. */
export function createRootLogger(level: LevelWithSilent = levelFromEnv()): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

let root: Logger | undefined;

/**
 * The process root, built on first use (a main calls this once; a component constructed without
 * an injected logger falls back to it, which is silent in unit tests).
 */
export function rootLogger(): Logger {
  root ??= createRootLogger();
  return root;
}

/** A child of `parent` (default: the process root) for one component. */
export function logger(scope: string, parent: Logger = rootLogger()): Logger {
  return parent.child({ scope });
}

export type { Logger };
