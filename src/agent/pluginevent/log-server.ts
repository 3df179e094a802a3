import { createServer } from "node:http";
import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import { closeServer, listenUnix, readBody } from "./server.js";
import { LOG_PATH, PLUGIN_LOG_SOCKET } from "../../cni-contract/index.js";

// The plugin runs in the runtime's context, where its stderr is easy to lose; it also POSTs
// its log lines here (a JSON array of JSON lines) and the agent re-logs them under one scope.
const LEVELS = new Set(["debug", "info", "warn", "error"]);

export interface PluginLogServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

function relog(line: string, log: Logger): void {
  let rec: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(line);
    rec = typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : { msg: String(v) };
  } catch {
    rec = { msg: line };
  }
  const level = typeof rec.level === "string" && LEVELS.has(rec.level) ? (rec.level as "debug" | "info" | "warn" | "error") : "info";
  // Drop the keys pino sets itself (duplicates would make invalid-looking JSON); keep the plugin's as plugin*.
  const { msg, level: _l, time: _t, scope: _s, pid, ...fields } = rec;
  log[level]({ ...fields, pluginPid: pid, pluginTime: rec.time }, typeof msg === "string" ? msg : "");
}

export async function startPluginLogServer(runDir: string, log: Logger = logger("cni-plugin")): Promise<PluginLogServer> {
  const server = createServer((req, res) => {
    if (req.url !== LOG_PATH || req.method !== "POST") {
      res.writeHead(404).end();
      return;
    }
    readBody(req).then(
      (body) => {
        let lines: unknown;
        try {
          lines = JSON.parse(body);
        } catch (err) {
          res.writeHead(400).end(`bad log body: ${errorMessage(err)}\n`);
          return;
        }
        if (!Array.isArray(lines)) {
          res.writeHead(400).end("log body must be a JSON array of strings\n");
          return;
        }
        for (const l of lines) if (typeof l === "string") relog(l, log);
        res.writeHead(200).end();
      },
      (err: unknown) => res.writeHead(400).end(`${errorMessage(err)}\n`),
    );
  });
  const socketPath = await listenUnix(server, runDir, PLUGIN_LOG_SOCKET);
  return { socketPath, close: () => closeServer(server, socketPath) };
}
