import type { PluginLogLevel } from "./config.js";

// The plugin's own tiny JSON logger: pino's shape (level label, time, pid, scope, msg) on
// stderr, without pino's start-up cost. Lines are also kept so they can be forwarded to the
// agent's log socket once the command is done. stdout is never touched: it carries the result.
const RANK: Record<string, number> = { debug: 20, info: 30, warn: 40, error: 50, none: 100 };

export interface PluginLog {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  setLevel(level: PluginLogLevel): void;
  /** Lines logged so far (JSON strings), for the agent's log socket. */
  lines(): string[];
}

export function createPluginLog(write: (line: string) => void, base: Record<string, unknown> = {}): PluginLog {
  let threshold = RANK.info ?? 30;
  const kept: string[] = [];
  const emit = (level: "debug" | "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>): void => {
    if ((RANK[level] ?? 0) < threshold) return;
    const line = JSON.stringify({
      level,
      time: new Date().toISOString(),
      pid: process.pid,
      scope: "cni-plugin",
      ...base,
      ...fields,
      msg,
    });
    kept.push(line);
    write(line + "\n");
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    setLevel: (level) => {
      threshold = RANK[level] ?? threshold;
    },
    lines: () => kept.slice(),
  };
}
