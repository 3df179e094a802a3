import type { Server, Socket } from "node:net";
import { NetnsHandle } from "../native/index.js";
import { NativeSocketFactory } from "../sockets/index.js";
import { AmbientError } from "../shared/errors.js";

// The demo's workloads: a tiny TCP app in every pod netns, and clients dialling from inside a
// pod netns. Their sockets carry no mark, so the pod's redirection rules apply to them exactly
// as to a container's sockets. The app answers how many bytes it got and whom it saw as the
// peer (ztunnel preserves the client's source address on inbound connections).

export const APP_PORT = 8080;

export interface Transfer {
  from: string;
  to: string;
  bytes: number;
  reply: string;
  ms: number;
}

export class DemoError extends AmbientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("DEMO_FAILED", message, options);
  }
}

export class PodApps {
  private readonly handles = new Map<string, NetnsHandle>();
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly accepted = new Map<string, number>();

  private factory(netnsPath: string): NativeSocketFactory {
    let h = this.handles.get(netnsPath);
    if (h === undefined) {
      h = NetnsHandle.open(netnsPath);
      this.handles.set(netnsPath, h);
    }
    return new NativeSocketFactory({ netns: h, mark: undefined, reusePort: false, spoofSource: false });
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.once("close", () => this.sockets.delete(s));
  }

  /** Starts the app in a pod: counts what a client sends until it half-closes, then answers. */
  async serve(netnsPath: string, label: string): Promise<void> {
    const server = await this.factory(netnsPath).listenTcp({ address: "0.0.0.0", port: APP_PORT });
    server.on("connection", (s: Socket) => {
      this.track(s);
      this.accepted.set(label, (this.accepted.get(label) ?? 0) + 1);
      s.on("error", () => undefined);
      let n = 0;
      s.on("data", (c: Buffer) => (n += c.length));
      s.once("end", () => s.end(`${label} received ${n} bytes from ${s.remoteAddress ?? "?"}:${s.remotePort ?? "?"}\n`));
    });
    this.servers.push(server);
  }

  /** Connections the app of `label` has accepted so far (what it saw, not what was attempted). */
  connectionsSeen(label: string): number {
    return this.accepted.get(label) ?? 0;
  }

  /**
   * Sends `bytes` from inside a pod to host:APP_PORT and returns the app's answer. `http`: the
   * app is a container's httpd, so the bytes go as a POST to its counting CGI.
   */
  async transfer(netnsPath: string, from: string, to: string, host: string, bytes: number, opts: { http?: string; timeoutMs?: number } = {}): Promise<Transfer> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const start = Date.now();
    const s = this.factory(netnsPath).connectTcp({ host, port: APP_PORT });
    this.track(s);
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new DemoError(`${from} → ${to} (${host}:${APP_PORT}) got no answer within ${timeoutMs} ms`)), timeoutMs);
        let got = "";
        s.setEncoding("utf8");
        s.on("data", (c: string) => (got += c));
        s.once("end", () => {
          clearTimeout(timer);
          resolve((opts.http !== undefined ? httpBody(got) : got).trim());
        });
        s.once("error", (err) => {
          clearTimeout(timer);
          reject(new DemoError(`${from} → ${to} (${host}:${APP_PORT}): ${err.message}`, { cause: err }));
        });
        s.once("connect", () => {
          const chunk = Buffer.alloc(16 * 1024, 0x61);
          let left = bytes;
          if (opts.http !== undefined) s.write(`POST ${opts.http} HTTP/1.0\r\nHost: ${host}\r\nContent-Length: ${bytes}\r\n\r\n`);
          const pump = (): void => {
            while (left > 0) {
              const n = Math.min(left, chunk.length);
              left -= n;
              if (!s.write(chunk.subarray(0, n))) {
                s.once("drain", pump);
                return;
              }
            }
            // httpd reads Content-Length bytes; the plain app reads until the half-close.
            if (opts.http === undefined) s.end();
          };
          pump();
        });
      });
      return { from, to, bytes, reply, ms: Date.now() - start };
    } finally {
      s.destroy();
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((srv) => new Promise<void>((r) => srv.close(() => r()))));
    for (const h of this.handles.values()) h.close();
    this.handles.clear();
  }
}

/** The body of an HTTP/1.0 answer, or the whole text with the status line when it is not a 200. */
function httpBody(text: string): string {
  const i = text.indexOf("\r\n\r\n");
  if (i < 0) return text;
  return /^HTTP\/1\.[01] 200/.test(text) ? text.slice(i + 4) : text.slice(0, text.indexOf("\r\n"));
}
