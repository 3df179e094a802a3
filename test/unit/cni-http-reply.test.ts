import fc from "fast-check";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { unixRequest as request } from "../../cni-plugin/agent-client.js";
import { HttpReplyError, HttpReplyReader, MAX_KEPT_BODY_BYTES, type HttpReply } from "../../cni-plugin/http-reply.js";
import { netUnixConnector, unixConnector, unixConnectorKind, type UnixConnector } from "../../cni-plugin/unix-stream.js";

// The plugin's own HTTP/1.1 client: the reply reader (pure) and the exchange over a unix socket.

/** Feeds `raw` in the given pieces; returns the reply, or "incomplete" if more bytes are needed. */
function feed(raw: string | Buffer, cuts: number[] = [], eof = false): HttpReply | "incomplete" {
  const bytes = typeof raw === "string" ? Buffer.from(raw, "latin1") : raw;
  const r = new HttpReplyReader();
  let from = 0;
  for (const at of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
    if (r.push(bytes.subarray(from, at))) return r.reply();
    from = at;
  }
  if (eof) {
    r.end();
    return r.reply();
  }
  return "incomplete";
}

const SAMPLES: [string, string, HttpReply][] = [
  ["content-length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"enrolled\":true}", { status: 200, body: '{"enrolled":true}' }],
  ["empty 500", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", { status: 500, body: "" }],
  [
    "chunked with extension and trailer",
    "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n6;x=y\r\nztunne\r\n10\r\nl not connected\n\r\n0\r\nX-Trailer: 1\r\n\r\n",
    { status: 500, body: "ztunnel not connected\n" },
  ],
  ["interim 100 first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", { status: 200, body: "ok\n" }],
  ["204 without length", "HTTP/1.1 204 No Content\r\n\r\n", { status: 204, body: "" }],
  ["no reason phrase", "HTTP/1.0 404\r\nContent-Length: 2\r\n\r\nno", { status: 404, body: "no" }],
];

describe("HttpReplyReader", () => {
  for (const [name, raw, want] of SAMPLES) {
    it(`reads a ${name} reply however the bytes are split`, () => {
      expect(feed(raw)).toEqual(want);
      fc.assert(
        fc.property(fc.array(fc.nat({ max: raw.length }), { maxLength: 12 }), (cuts) => {
          expect(feed(raw, cuts)).toEqual(want);
        }),
      );
    });
  }

  it("stops at the framed end and ignores bytes after it", () => {
    expect(feed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE")).toEqual({ status: 200, body: "ok" });
  });

  it("needs the peer's end for a reply without length, and completes on it", () => {
    const raw = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close";
    expect(feed(raw)).toBe("incomplete");
    expect(feed(raw, [20, 50], true)).toEqual({ status: 200, body: "until close" });
  });

  it("is incomplete until Content-Length bytes or the last chunk arrived", () => {
    expect(feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc")).toBe("incomplete");
    expect(feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")).toBe("incomplete");
    expect(feed("HTTP/1.1 200 OK\r\nContent-Le")).toBe("incomplete");
  });

  it("fails when the peer closes before the reply is complete", () => {
    expect(() => feed("", [], true)).toThrow(/before a reply/);
    expect(() => feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", [], true)).toThrow(/middle of the reply/);
    expect(() => feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", [], true)).toThrow(HttpReplyError);
  });

  it("rejects what is not an HTTP/1.x reply", () => {
    for (const raw of [
      "SSH-2.0-OpenSSH\r\n\r\n",
      "HTTP/2 200\r\n\r\n",
      "HTTP/1.1 2000 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
    ]) {
      expect(() => feed(raw), raw).toThrow(HttpReplyError);
    }
  });

  it("bounds the header section and the kept body", () => {
    expect(() => feed(`HTTP/1.1 200 OK\r\nX: ${"a".repeat(20_000)}`)).toThrow(/headers exceed/);
    const big = "b".repeat(100_000);
    const r = feed(`HTTP/1.1 500 Oops\r\nContent-Length: ${big.length}\r\n\r\n${big}`, [1000, 70_000]);
    expect(r).toEqual({ status: 500, body: big.slice(0, MAX_KEPT_BODY_BYTES) });
  });

  it("decodes UTF-8 split across pieces", () => {
    const body = Buffer.from("ünïcödé reason", "utf8");
    const raw = Buffer.concat([Buffer.from(`HTTP/1.1 500 X\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
    expect(feed(raw, [raw.length - body.length + 1, raw.length - 3])).toEqual({ status: 500, body: "ünïcödé reason" });
  });
});

describe("the plugin's unix socket stream", () => {
  it("is libuv's pipe handle on this node, not the node:net fallback", () => {
    expect(unixConnectorKind()).toBe("pipe-binding");
  });
});

// Every exchange runs over both streams: the pipe handle the plugin uses and the node:net
// fallback of a node without the binding.
describe.each<[string, UnixConnector]>([
  ["the pipe handle", unixConnector()],
  ["node:net", netUnixConnector],
])("unixRequest over %s", (_name, connector) => {
  const unixRequest = (socketPath: string, method: "GET" | "POST", path: string, body: string | undefined, timeoutMs: number): Promise<HttpReply> =>
    request(socketPath, method, path, body, timeoutMs, {}, connector);
  const dirs: string[] = [];
  let server: Server | undefined;
  const conns: Socket[] = [];
  afterEach(async () => {
    for (const c of conns.splice(0)) c.destroy();
    if (server) await new Promise<void>((resolve) => server?.close(() => resolve()));
    server = undefined;
  });
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** A raw server on a fresh socket: `onData` sees every request byte received so far. */
  async function rawServer(onData: (sock: Socket, received: string) => void): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), "cni-h1-"));
    dirs.push(dir);
    const path = join(dir, "s.sock");
    server = createServer((sock) => {
      conns.push(sock);
      let received = "";
      sock.on("data", (d: Buffer) => {
        received += d.toString("latin1");
        onData(sock, received);
      });
      sock.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => server?.listen(path, resolve));
    return path;
  }

  it("sends the request node:http would send, and is done at Content-Length though the agent keeps the connection", async () => {
    const requests: string[] = [];
    const path = await rawServer((sock, received) => {
      if (!received.includes("\r\n\r\n") || !received.endsWith("}")) return;
      requests.push(received);
      sock.write("HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"enrolled\":true}"); // and never closes
    });
    const body = '{"Netns":"/n","PodName":"p"}';
    // The agent never closes: the reply can only complete at Content-Length (waiting for the
    // close would end in the request's timeout error instead).
    expect(await unixRequest(path, "POST", "/cmdadd", body, 3000)).toEqual({ status: 200, body: '{"enrolled":true}' });
    expect(requests).toEqual([
      `POST /cmdadd HTTP/1.1\r\nHost: unix\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    ]);
  });

  it("sends a GET without a body", async () => {
    const requests: string[] = [];
    const path = await rawServer((sock, received) => {
      requests.push(received);
      sock.end("HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready: x\n");
    });
    expect(await unixRequest(path, "GET", "/healthz", undefined, 3000)).toEqual({ status: 503, body: "not ready: x\n" });
    expect(requests).toEqual(["GET /healthz HTTP/1.1\r\nHost: unix\r\nConnection: close\r\n\r\n"]);
  });

  it("fails on a garbled reply, on a close before the reply, and on silence after the deadline", async () => {
    let mode: "garbage" | "close" | "silent" = "garbage";
    const path = await rawServer((sock) => {
      if (mode === "garbage") sock.end("hello there\r\n\r\n");
      else if (mode === "close") sock.end();
    });
    await expect(unixRequest(path, "GET", "/healthz", undefined, 3000)).rejects.toThrow(HttpReplyError);
    mode = "close";
    await expect(unixRequest(path, "GET", "/healthz", undefined, 3000)).rejects.toThrow(/before a reply/);
    mode = "silent";
    const t = Date.now();
    await expect(unixRequest(path, "GET", "/healthz", undefined, 300)).rejects.toThrow(/no answer within 300 ms/);
    expect(Date.now() - t).toBeGreaterThanOrEqual(290);
  });

  it("fails with the connect error when nobody listens", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cni-h1-"));
    dirs.push(dir);
    await expect(unixRequest(join(dir, "none.sock"), "GET", "/healthz", undefined, 1000)).rejects.toThrow(/connect ENOENT .*none\.sock/);
    // A path that is not a socket: connect is refused.
    writeFileSync(join(dir, "file.sock"), "");
    await expect(unixRequest(join(dir, "file.sock"), "GET", "/healthz", undefined, 1000)).rejects.toThrow(/connect ECONNREFUSED/);
  });

  it("sends a request larger than the socket buffer whole, and reads a reply that comes in many pieces", async () => {
    const body = JSON.stringify({ pad: "x".repeat(1 << 20) });
    let got = 0;
    const path = await rawServer((sock, received) => {
      const at = received.indexOf("\r\n\r\n");
      if (at < 0 || received.length - at - 4 < body.length) return;
      got = received.length - at - 4;
      const reply = `HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n${"y".repeat(3000)}`;
      let i = 0;
      const drip = (): void => {
        if (i >= reply.length) return;
        sock.write(reply.slice(i, i + 700));
        i += 700;
        setTimeout(drip, 2);
      };
      drip();
    });
    expect(await unixRequest(path, "POST", "/cmdadd", body, 5000)).toEqual({ status: 200, body: "y".repeat(3000) });
    expect(got).toBe(body.length);
  });

  it("reads node:http's chunked replies (a handler that streams its answer)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cni-h1-"));
    dirs.push(dir);
    const path = join(dir, "h.sock");
    const http = createHttpServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(500);
        res.write("failed to add pod: ");
        setTimeout(() => res.end("netns vanished\n"), 20);
      });
    });
    await new Promise<void>((resolve) => http.listen(path, resolve));
    try {
      expect(await unixRequest(path, "POST", "/cmdadd", "{}", 3000)).toEqual({ status: 500, body: "failed to add pod: netns vanished\n" });
    } finally {
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
  });
});
