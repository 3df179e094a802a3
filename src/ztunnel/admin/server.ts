import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/log.js";
import type { HostPort } from "../config.js";
import type { Readiness } from "../readiness.js";

// ztunnel's node-level HTTP endpoints (DESIGN §9): the readiness probe (15021) and the
// localhost admin interface (15000) with /config_dump and /quitquitquit.

export interface AdminHooks {
  readonly configDump: () => unknown;
  readonly quit: () => void;
  /** Debug only (ZTUNNEL_DEBUG_ENDPOINTS): makes a worker crash; undefined = disabled. */
  readonly crashWorker?: (index: number) => void;
}

export async function startReadinessServer(addr: HostPort, readiness: Readiness, log: Logger): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method === "GET" && req.url === "/healthz/ready") {
      const r = readiness.report();
      if (r.ready) send(res, 200, "ready\n");
      else send(res, 500, `not ready:\n${r.pending.map((p) => `- ${p}`).join("\n")}\n`);
      return;
    }
    send(res, 404, "not found\n");
  });
  return await listen(server, addr, "readiness", log);
}

export async function startAdminServer(addr: HostPort, hooks: AdminHooks, log: Logger): Promise<Server> {
  const server = createServer((req, res) => {
    try {
      route(req, res, hooks);
    } catch (err) {
      send(res, 500, `${errorMessage(err)}\n`);
    }
  });
  return await listen(server, addr, "admin", log);
}

function route(req: IncomingMessage, res: ServerResponse, hooks: AdminHooks): void {
  const url = new URL(req.url ?? "/", "http://admin");
  if (req.method === "GET" && url.pathname === "/config_dump") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(hooks.configDump(), null, 2));
    return;
  }
  if (req.method === "POST" && url.pathname === "/quitquitquit") {
    send(res, 200, "OK\n");
    hooks.quit();
    return;
  }
  const crash = /^\/debug\/workers\/(\d+)\/crash$/.exec(url.pathname);
  if (req.method === "POST" && crash !== null && hooks.crashWorker !== undefined) {
    hooks.crashWorker(Number(crash[1]));
    send(res, 200, "OK\n");
    return;
  }
  send(res, 404, "not found\n");
}

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(body);
}

function listen(server: Server, addr: HostPort, what: string, log: Logger): Promise<Server> {
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(new Error(`cannot listen for ${what} on ${addr.host}:${addr.port}: ${err.message}`, { cause: err })));
    server.listen({ host: addr.host, port: addr.port }, () => {
      log.info({ addr: `${addr.host}:${addr.port}` }, `${what} endpoint listening`);
      resolve(server);
    });
  });
}
