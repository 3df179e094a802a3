import { chmod, mkdir, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import { AmbientError, errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import type { PluginEventHandler } from "./handler.js";
import {
  ADD_PATH,
  DEL_PATH,
  HEALTH_PATH,
  PLUGIN_EVENT_SOCKET,
  CONTAINER_ID_HEADER,
  decodeAddEvent,
  decodeContainerId,
  decodeDelEvent,
} from "../../cni-contract/index.js";

// Events are a few hundred bytes; anything bigger is not from our plugin.
export const MAX_BODY_BYTES = 64 * 1024;
export const DEFAULT_MAX_CONNECTIONS = 64;

export class BodyTooLargeError extends AmbientError {
  constructor() {
    super("PLUGIN_EVENT_BODY_TOO_LARGE", `request body exceeds ${MAX_BODY_BYTES} bytes`);
  }
}

export interface PluginEventServerOptions {
  /** Connections served at once (the plugin opens one per command); more are closed at accept. Default 64. */
  maxConnections?: number;
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  /** Directory holding pluginevent.sock (the plugin's cni_agent_run_dir). */
  runDir: string;
  handler: PluginEventHandler;
}

export interface PluginEventServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      // Keep draining (so the client gets its 400) but stop buffering.
      if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on("end", () => {
      if (size > MAX_BODY_BYTES) reject(new BodyTooLargeError());
      else resolve(Buffer.concat(chunks).toString("utf8"));
    });
    req.on("error", reject);
  });
}

function reply(res: ServerResponse, status: number, body: string, type = "text/plain; charset=utf-8"): void {
  res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

async function handleAdd(handler: PluginEventHandler, req: IncomingMessage, res: ServerResponse, log: Logger): Promise<void> {
  let body: string;
  try {
    body = await readBody(req);
  } catch (err) {
    reply(res, 400, errorMessage(err) + "\n");
    return;
  }
  let event;
  try {
    const containerId = decodeContainerId(req.headers[CONTAINER_ID_HEADER]);
    event = { ...decodeAddEvent(body), ...(containerId !== undefined ? { containerId } : {}) };
  } catch (err) {
    log.warn({ err: errorMessage(err) }, "bad CNI ADD event");
    reply(res, 400, `bad CNI ADD event: ${errorMessage(err)}\n`);
    return;
  }
  const pod = { pod: event.podName, namespace: event.podNamespace, netns: event.netns };
  try {
    const decision = await handler.onAdd(event);
    if (decision.outcome === "refused") {
      log.warn({ ...pod, reason: decision.reason }, "refused pod");
      reply(res, 500, decision.reason + "\n");
      return;
    }
    const enrolled = decision.outcome === "enrolled";
    log.info({ ...pod, ips: event.ips.map((i) => i.address), containerId: event.containerId, enrolled }, "CNI ADD handled");
    const out = enrolled ? { enrolled } : { enrolled, reason: decision.reason };
    reply(res, 200, JSON.stringify(out), "application/json");
  } catch (err) {
    log.error({ ...pod, err: errorMessage(err) }, "CNI ADD failed");
    reply(res, 500, `failed to add pod to the mesh: ${errorMessage(err)}\n`);
  }
}

async function handleDel(handler: PluginEventHandler, req: IncomingMessage, res: ServerResponse, log: Logger): Promise<void> {
  let event;
  try {
    event = decodeDelEvent(await readBody(req));
  } catch (err) {
    reply(res, 400, `bad CNI DEL event: ${errorMessage(err)}\n`);
    return;
  }
  try {
    await handler.onDel(event);
    reply(res, 200, "");
  } catch (err) {
    log.error({ containerId: event.containerId, pod: event.podName, err: errorMessage(err) }, "CNI DEL failed");
    reply(res, 500, `failed to remove pod: ${errorMessage(err)}\n`);
  }
}

function route(handler: PluginEventHandler, req: IncomingMessage, res: ServerResponse, log: Logger): void {
  const path = (req.url ?? "").split("?")[0];
  if (path === ADD_PATH && req.method === "POST") {
    void handleAdd(handler, req, res, log);
  } else if (path === DEL_PATH && req.method === "POST") {
    void handleDel(handler, req, res, log);
  } else if (path === HEALTH_PATH && (req.method === "GET" || req.method === "HEAD")) {
    const pending = handler.notReadyReason?.();
    if (pending === undefined) reply(res, 200, "ok\n");
    else reply(res, 503, `not ready: ${pending}\n`);
  } else if (path === ADD_PATH || path === DEL_PATH || path === HEALTH_PATH) {
    reply(res, 405, "method not allowed\n");
  } else {
    reply(res, 404, "not found\n");
  }
}

/** Unix socket path, created fresh; the directory and the socket are root-only. */
export async function listenUnix(server: Server, runDir: string, name: string): Promise<string> {
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  const socketPath = join(runDir, name);
  // A socket left by a crashed agent would make listen fail with EADDRINUSE.
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });
  await chmod(socketPath, 0o600);
  return socketPath;
}

export async function closeServer(server: Server, socketPath: string): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
  await rm(socketPath, { force: true });
}

/** Starts the HTTP server the CNI plugin talks to (POST /cmdadd, POST /cmddel, GET /healthz). */
export async function startPluginEventServer(opts: PluginEventServerOptions): Promise<PluginEventServer> {
  const log = opts.log ?? logger("pluginevent");
  const server = createServer((req, res) => route(opts.handler, req, res, log));
  // Bounded: a runaway caller on the node cannot hold the agent's fds or its event loop
  // (issue 16 item 3). Node closes connections beyond maxConnections at accept; a request
  // that does not arrive whole in time is answered 408 and closed.
  server.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  let dropped = 0;
  server.on("drop", () => {
    if (dropped++ % 100 === 0) log.warn({ maxConnections: server.maxConnections, dropped }, "plugin event socket at its connection cap; closing new connections");
  });
  const socketPath = await listenUnix(server, opts.runDir, PLUGIN_EVENT_SOCKET);
  log.info({ socket: socketPath }, "listening for CNI plugin events");
  return { socketPath, close: () => closeServer(server, socketPath) };
}
