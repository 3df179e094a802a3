import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/log.js";
import type { HostPort } from "../config.js";
import { capConnections, ThrottledLog, type PeerCaps } from "../proxy/limits.js";
import type { Readiness } from "../readiness.js";

// ztunnel's node-level HTTP endpoints (DESIGN §9): the readiness probe (15021) and the
// localhost admin interface (15000) with /config_dump, /quitquitquit, /logging and /listeners,
// and the Prometheus endpoint (15020).

export interface AdminHooks {
  readonly configDump: () => Promise<unknown>;
  readonly quit: () => void;
  /** POST /logging?level=: returns the level now in effect; throws on an unknown level. */
  readonly setLogLevel: (level: string) => string;
  readonly currentLogLevel: () => string;
  /** GET /listeners?pod=<ns>/<name>; undefined = no such enrolled pod. */
  readonly listeners: (namespace: string, name: string) => Promise<unknown>;
  /** Debug only (ZTUNNEL_DEBUG_ENDPOINTS): makes a worker crash; undefined = disabled. */
  readonly crashWorker?: (index: number) => void;
}

/**
 * Every node-level server is capped (overall and per peer) and drops slow or idle clients, so
 * pods that can reach the node address cannot use up ztunnel's descriptors through them or
 * keep the kubelet's readiness probe out.
 */
export const NODE_SERVER_CAPS: PeerCaps = { max: 128, perPeer: 16 };
const HTTP_TIMEOUTS = { headersTimeout: 5_000, requestTimeout: 10_000, keepAliveTimeout: 5_000, connectionsCheckingInterval: 1_000 } as const;

export async function startReadinessServer(addr: HostPort, readiness: Readiness, log: Logger): Promise<Server> {
  const server = createServer(HTTP_TIMEOUTS, (req, res) => {
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
  const server = createServer(HTTP_TIMEOUTS, (req, res) => {
    route(req, res, hooks).catch((err: unknown) => send(res, 500, `${errorMessage(err)}\n`));
  });
  return await listen(server, addr, "admin", log);
}

/** Prometheus exposition on [::]:15020/metrics (STATS_ADDR). */
export async function startMetricsServer(addr: HostPort, metrics: { metrics(): Promise<string>; readonly contentType: string }, log: Logger): Promise<Server> {
  const server = createServer(HTTP_TIMEOUTS, (req, res) => {
    if (req.method === "GET" && (req.url ?? "").split("?")[0] === "/metrics") {
      metrics.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": metrics.contentType });
          res.end(text);
        },
        (err: unknown) => send(res, 500, `${errorMessage(err)}\n`),
      );
      return;
    }
    send(res, 404, "not found\n");
  });
  return await listen(server, addr, "metrics", log);
}

/** The request target as a URL; undefined when it does not parse (e.g. `GET http://[::1`). */
function requestUrl(req: IncomingMessage): URL | undefined {
  try {
    return new URL(req.url ?? "/", "http://admin");
  } catch {
    return undefined;
  }
}

async function route(req: IncomingMessage, res: ServerResponse, hooks: AdminHooks): Promise<void> {
  const url = requestUrl(req);
  if (url === undefined) {
    send(res, 400, `malformed request target ${JSON.stringify(req.url ?? "")}\n`);
    return;
  }
  if (req.method === "GET" && url.pathname === "/config_dump") {
    json(res, 200, await hooks.configDump());
    return;
  }
  if (url.pathname === "/logging") {
    const level = url.searchParams.get("level");
    if (req.method === "POST" && level !== null) {
      try {
        send(res, 200, `current log level is ${hooks.setLogLevel(level)}\n`);
      } catch (err) {
        send(res, 400, `${errorMessage(err)}\n`);
      }
      return;
    }
    send(res, 200, `current log level is ${hooks.currentLogLevel()}\nchange it with POST /logging?level=<trace|debug|info|warn|error|fatal|silent>\n`);
    return;
  }
  if (req.method === "GET" && url.pathname === "/listeners") {
    const pod = url.searchParams.get("pod") ?? "";
    const slash = pod.indexOf("/");
    if (slash <= 0 || slash === pod.length - 1) {
      send(res, 400, "pass ?pod=<namespace>/<name> of an enrolled pod\n");
      return;
    }
    const view = await hooks.listeners(pod.slice(0, slash), pod.slice(slash + 1));
    if (view === undefined) send(res, 404, `pod ${pod} is not enrolled on this node\n`);
    else json(res, 200, view);
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

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body, null, 2));
}

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(body);
}

function listen(server: Server, addr: HostPort, what: string, log: Logger): Promise<Server> {
  capConnections(server, NODE_SERVER_CAPS, new ThrottledLog(log), what);
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(new Error(`cannot listen for ${what} on ${addr.host}:${addr.port}: ${err.message}`, { cause: err })));
    server.listen({ host: addr.host, port: addr.port }, () => {
      log.info({ addr: `${addr.host}:${addr.port}` }, `${what} endpoint listening`);
      resolve(server);
    });
  });
}
