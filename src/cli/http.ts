import { request } from "node:http";
import type { Socket } from "node:net";
import type { NetnsHandle } from "../native/index.js";
import type { NativeSocketFactory } from "../sockets/index.js";
import { errorMessage } from "../shared/errors.js";
import { UnreachableError } from "./errors.js";

// HTTP to the node endpoints (ztunnel admin/readiness/stats, agent health). They listen on
// 127.0.0.1 of the node's netns, so with `netns` set the client socket is created inside that
// netns (native createSocket) and this process never switches namespaces itself.

export interface HttpTarget {
  /** Base URL, e.g. http://127.0.0.1:15000 */
  readonly url: string;
  /** Named netns (/var/run/netns/<name>) or a path; undefined = this process's netns. */
  readonly netns?: string | undefined;
}

export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

export function netnsPathOf(netns: string): string {
  return netns.includes("/") ? netns : `/var/run/netns/${netns}`;
}

export async function httpCall(target: HttpTarget, path: string, method = "GET", timeoutMs = 5_000): Promise<HttpAnswer> {
  const base = new URL(target.url);
  const host = base.hostname.replace(/^\[|\]$/g, "");
  const port = Number(base.port === "" ? 80 : base.port);
  let handle: NetnsHandle | undefined;
  try {
    let factory: NativeSocketFactory | undefined;
    if (target.netns !== undefined) {
      // Loaded only when needed: commands without --netns work without the native addon.
      const [{ NetnsHandle }, { NativeSocketFactory }] = await Promise.all([import("../native/index.js"), import("../sockets/index.js")]);
      try {
        handle = NetnsHandle.open(netnsPathOf(target.netns));
      } catch (err) {
        throw new UnreachableError(`cannot open netns ${target.netns}: ${errorMessage(err)} (is the node running? list them with: ip netns list)`, { cause: err });
      }
      factory = new NativeSocketFactory({ netns: handle, mark: undefined, reusePort: false, spoofSource: false });
    }
    return await new Promise<HttpAnswer>((resolve, reject) => {
      const req = request(
        {
          method,
          host,
          port,
          path,
          ...(factory !== undefined ? { createConnection: (): Socket => factory.connectTcp({ host, port }) } : {}),
        },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (body += c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
          res.on("error", reject);
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on("error", (err) => reject(new UnreachableError(`${target.url}${path}${target.netns !== undefined ? ` (in netns ${target.netns})` : ""}: ${errorMessage(err)}`, { cause: err })));
      req.end();
    });
  } finally {
    handle?.close();
  }
}

/** GET that must answer 200 with JSON. */
export async function getJson(target: HttpTarget, path: string): Promise<unknown> {
  const r = await httpCall(target, path);
  if (r.status !== 200) throw new UnreachableError(`${target.url}${path} answered ${r.status}: ${r.body.trim().slice(0, 200)}`);
  try {
    return JSON.parse(r.body) as unknown;
  } catch (err) {
    throw new UnreachableError(`${target.url}${path} did not answer JSON (is this a ztunnel admin port?)`, { cause: err });
  }
}
