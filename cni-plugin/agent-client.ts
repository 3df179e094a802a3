import { join } from "node:path";
import { CniCode, CniError } from "./cni/errors.js";
import { HttpReplyReader, type HttpReply } from "./http-reply.js";
import { unixConnector, type UnixConnector } from "./unix-stream.js";
import {
  ADD_PATH,
  CONTAINER_ID_HEADER,
  DEL_PATH,
  HEALTH_PATH,
  LOG_PATH,
  PLUGIN_EVENT_SOCKET,
  PLUGIN_LOG_SOCKET,
  encodeAddEvent,
  encodeDelEvent,
  type CmdAddEvent,
  type CmdDelEvent,
} from "../src/cni-contract/index.js";

// HTTP over the agent's unix sockets. Every call has a hard deadline covering connect, send
// and the whole response, so a wedged agent cannot hang the runtime.
export const ADD_TIMEOUT_MS = 5000;
export const DEL_TIMEOUT_MS = 2000;
export const STATUS_TIMEOUT_MS = 2000;
export const LOG_TIMEOUT_MS = 500;

export type { HttpReply };

export class AgentUnreachableError extends CniError {
  constructor(socket: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(
      CniCode.TryAgainLater,
      `ambient agent unreachable at ${socket}: ${reason}`,
      "the node agent must be running before ambient pods can start; the runtime will retry",
      { cause },
    );
  }
}

/**
 * One HTTP/1.1 exchange over a unix socket: the request is written whole (never half-closed, a
 * Go server would take our FIN for a cancelled request) and the reply is complete once its
 * framing says so or the agent closes the connection.
 */
export function unixRequest(
  socketPath: string,
  method: "GET" | "POST",
  path: string,
  body: string | undefined,
  timeoutMs: number,
  headers: Readonly<Record<string, string>> = {},
  connector: UnixConnector = unixConnector(),
): Promise<HttpReply> {
  return new Promise<HttpReply>((resolve, reject) => {
    let head = `${method} ${path} HTTP/1.1\r\nHost: unix\r\nConnection: close\r\n`;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    if (body !== undefined) head += `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`;
    const reader = new HttpReplyReader();
    let settled = false;
    const finish = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err !== undefined) reject(err);
      else resolve(reader.reply());
    };
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const socket = connector(socketPath, {
      data: (chunk) => {
        try {
          if (reader.push(chunk)) finish(undefined);
        } catch (err) {
          finish(err as Error);
        }
      },
      end: () => {
        try {
          reader.end();
          finish(undefined);
        } catch (err) {
          finish(err as Error);
        }
      },
      // A write error after the whole reply arrived (the agent closed first) changes nothing.
      error: (err) => finish(reader.complete ? undefined : err),
    });
    socket.write(`${head}\r\n${body ?? ""}`);
  });
}

export function eventSocket(runDir: string): string {
  return join(runDir, PLUGIN_EVENT_SOCKET);
}

/** POSTs the ADD event; resolves only on 200, otherwise throws a CniError for the runtime. */
export async function postAdd(runDir: string, ev: CmdAddEvent, timeoutMs = ADD_TIMEOUT_MS): Promise<string> {
  const socket = eventSocket(runDir);
  let reply: HttpReply;
  try {
    const headers: Record<string, string> = {};
    if (ev.containerId !== undefined && ev.containerId !== "") headers[CONTAINER_ID_HEADER] = ev.containerId;
    reply = await unixRequest(socket, "POST", ADD_PATH, encodeAddEvent(ev), timeoutMs, headers);
  } catch (err) {
    throw new AgentUnreachableError(socket, err);
  }
  if (reply.status !== 200) {
    const reason = reply.body.trim() || `HTTP ${reply.status}`;
    throw new CniError(
      CniCode.Internal,
      `ambient agent refused pod ${ev.podNamespace}/${ev.podName}: ${reason}`,
      `HTTP ${reply.status} from ${socket}${ADD_PATH}`,
    );
  }
  return reply.body;
}

export async function postDel(runDir: string, ev: CmdDelEvent, timeoutMs = DEL_TIMEOUT_MS): Promise<HttpReply> {
  return await unixRequest(eventSocket(runDir), "POST", DEL_PATH, encodeDelEvent(ev), timeoutMs);
}

/** STATUS: the agent is "available" when its event socket answers the health probe with 200. */
export async function probeAgent(runDir: string, timeoutMs = STATUS_TIMEOUT_MS): Promise<void> {
  const socket = eventSocket(runDir);
  let reply: HttpReply;
  try {
    reply = await unixRequest(socket, "GET", HEALTH_PATH, undefined, timeoutMs);
  } catch (err) {
    throw new CniError(CniCode.PluginNotAvailable, `ambient agent unreachable at ${socket}: ${(err as Error).message}`);
  }
  if (reply.status !== 200) {
    throw new CniError(CniCode.PluginNotAvailable, `ambient agent not ready: ${reply.body.trim() || `HTTP ${reply.status}`}`);
  }
}

/** Best effort: forwards the plugin's log lines to the agent, which re-logs them centrally. */
export async function forwardLogs(runDir: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  try {
    await unixRequest(join(runDir, PLUGIN_LOG_SOCKET), "POST", LOG_PATH, JSON.stringify(lines), LOG_TIMEOUT_MS);
  } catch {
    // No agent log socket: stderr already has every line.
  }
}
