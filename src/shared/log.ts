import { pino, type Logger, type LevelWithSilent } from "pino";

// One root logger per process, JSON on stderr (stdout is reserved: the CNI plugin prints
// its result there, and the CLI prints tables). Components take a child with a `scope`.
const level = (process.env.LOG_LEVEL ?? "info") as LevelWithSilent;

export const rootLogger: Logger = pino(
  {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  },
  pino.destination({ fd: 2, sync: true }),
);

export function logger(scope: string): Logger {
  return rootLogger.child({ scope });
}

export type { Logger };
