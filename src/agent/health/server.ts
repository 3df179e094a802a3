import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import type { Registry } from "prom-client";

export interface HealthServerOptions {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  host: string;
  port: number;
  registry: Registry;
  /** Names of what still blocks readiness; empty = ready. */
  pending(): string[];
}

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

/** /healthz (the process serves), /readyz (200 or 503 naming what is pending), /metrics. */
export async function startHealthServer(o: HealthServerOptions): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    const send = (status: number, body: string, type = "text/plain; charset=utf-8"): void => {
      res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "method not allowed\n");
    if (path === "/healthz") return send(200, "ok\n");
    if (path === "/readyz") {
      const pending = o.pending();
      return pending.length === 0 ? send(200, "ready\n") : send(503, `not ready:\n${pending.map((p) => `- ${p}`).join("\n")}\n`);
    }
    if (path === "/metrics") {
      o.registry
        .metrics()
        .then((text) => send(200, text, o.registry.contentType))
        .catch((err: unknown) => send(500, `metrics failed: ${errorMessage(err)}\n`));
      return;
    }
    send(404, "not found\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  (o.log ?? logger("agent-http")).info({ host: o.host, port }, "serving /healthz, /readyz and /metrics");
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
