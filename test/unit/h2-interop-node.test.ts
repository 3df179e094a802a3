import { connect as h2connect, constants as h2c, createServer as createH2Server, type ClientHttp2Stream, type ServerHttp2Stream } from "node:http2";
import type { Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { H2Connection } from "../../src/ztunnel/proxy/h2/connection.js";
import { H2Connection as Conn } from "../../src/ztunnel/proxy/h2/connection.js";
import { ErrorCode } from "../../src/ztunnel/proxy/h2/frames.js";
import { headerObject } from "../../src/ztunnel/proxy/h2/headers.js";
import type { H2Stream } from "../../src/ztunnel/proxy/h2/stream.js";
import { collect, listenLoopback, ourClient, payload, send, serverOpts, sha } from "../fixtures/h2-peers.js";

// Node's own HTTP/2 (nghttp2 inside) as the peer of our lean layer, both ways, over loopback
// TCP: CONNECT, 5 MiB each way (past the 4 MiB stream window, so WINDOW_UPDATEs must flow),
// half-close in each direction, resets, GOAWAY, PING.

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const BIG = 5 * 1024 * 1024;

async function nodeEchoServer(onStream?: (s: ServerHttp2Stream, h: Record<string, unknown>) => boolean): Promise<{ port: number; h2: ReturnType<typeof createH2Server> }> {
  const h2 = createH2Server({ settings: { initialWindowSize: 4 * 1024 * 1024, maxFrameSize: 1024 * 1024 }, maxSessionMemory: 64 });
  h2.on("session", (s) => s.setLocalWindowSize(16 * 1024 * 1024));
  h2.on("stream", (stream, headers) => {
    stream.on("error", () => undefined); // resets are what some tests are about
    if (onStream?.(stream, headers) === true) return;
    stream.respond({ ":status": 200 });
    stream.pipe(stream);
  });
  await new Promise<void>((r) => h2.listen(0, "127.0.0.1", () => r()));
  cleanups.push(() => h2.close());
  return { port: (h2.address() as { port: number }).port, h2 };
}

function connectHeaders(authority: string): Array<[string, string]> {
  return [[":method", "CONNECT"], [":authority", authority], ["forwarded", 'for="127.0.0.5:40000"']];
}

function response(s: H2Stream): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    s.once("response", (h) => resolve(headerObject(h)));
    s.once("error", reject);
  });
}

describe("lean HTTP/2 client against node:http2", () => {
  let client: H2Connection | undefined;
  afterEach(() => client?.destroy());

  it("CONNECT and 5 MiB echoed each way through both windows", async () => {
    let seen: Record<string, unknown> = {};
    const { port } = await nodeEchoServer((_s, h) => {
      seen = h;
      return false;
    });
    client = await ourClient(port);
    const s = client.request(connectHeaders("10.0.0.1:80"));
    expect((await response(s))[":status"]).toBe("200");
    expect(seen[":method"]).toBe("CONNECT");
    expect(seen[":authority"]).toBe("10.0.0.1:80");
    expect(seen.forwarded).toBe('for="127.0.0.5:40000"');
    const data = payload(BIG, 1);
    const got = collect(s);
    await send(s, data);
    expect(sha(await got)).toBe(sha(data));
  });

  it("half-close: the server keeps sending after our END_STREAM", async () => {
    const { port } = await nodeEchoServer((stream) => {
      stream.respond({ ":status": 200 });
      stream.resume();
      stream.once("end", () => {
        stream.write("after your end ");
        setTimeout(() => stream.end("and done"), 20);
      });
      return true;
    });
    client = await ourClient(port);
    const s = client.request(connectHeaders("10.0.0.1:80"));
    await response(s);
    const closed = new Promise<void>((r) => s.once("close", () => r()));
    const got = collect(s);
    s.end(Buffer.from("bye"));
    expect((await got).toString()).toBe("after your end and done");
    await closed;
    expect(s.rstCode).toBeUndefined();
  });

  it("a reset from the server surfaces as an error with its code", async () => {
    const { port } = await nodeEchoServer((stream) => {
      stream.respond({ ":status": 200 });
      setTimeout(() => stream.close(h2c.NGHTTP2_CONNECT_ERROR), 10);
      return true;
    });
    client = await ourClient(port);
    const s = client.request(connectHeaders("10.0.0.1:80"));
    await response(s);
    const err = await new Promise<{ code: number }>((r) => s.once("error", r));
    expect(err.code).toBe(ErrorCode.CONNECT_ERROR);
    expect(s.rstCode).toBe(ErrorCode.CONNECT_ERROR);
  });

  it("PING is answered; GOAWAY from the server drains the connection", async () => {
    const { port, h2 } = await nodeEchoServer();
    const sessions: Array<{ goaway: (code: number) => void }> = [];
    h2.on("session", (ss) => sessions.push(ss));
    client = await ourClient(port);
    await new Promise<void>((r) => client?.ping(r));
    const s = client.request(connectHeaders("10.0.0.1:80"));
    await response(s);
    const goaway = new Promise<number>((r) => client?.once("goaway", (code) => r(code)));
    sessions[0].goaway(h2c.NGHTTP2_NO_ERROR);
    expect(await goaway).toBe(ErrorCode.NO_ERROR);
    expect(client.canOpenStream()).toBe(false);
    // The open stream still works until it ends.
    const got = collect(s);
    s.end(Buffer.from("still here"));
    expect((await got).toString()).toBe("still here");
    if (!client.closed) await new Promise((r) => client?.once("close", r));
  });

  it("120 concurrent CONNECT streams on one connection", async () => {
    const { port } = await nodeEchoServer();
    client = await ourClient(port);
    const results = await Promise.all(
      Array.from({ length: 120 }, async (_, i) => {
        const s = (client as H2Connection).request(connectHeaders(`10.0.0.1:${1000 + i}`));
        await response(s);
        const got = collect(s);
        s.end(Buffer.from(`stream ${i}`));
        return (await got).toString();
      }),
    );
    expect(results).toEqual(Array.from({ length: 120 }, (_, i) => `stream ${i}`));
  });
});

describe("lean HTTP/2 server against node:http2's client", () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  async function ourEchoServer(handle?: (s: H2Stream, h: Record<string, string>) => void): Promise<number> {
    const l = await listenLoopback((sock) => {
      const conn = new Conn(sock, serverOpts());
      conn.on("stream", (s, headers) => {
        const h = headerObject(headers);
        if (handle !== undefined) return handle(s, h);
        if (h[":method"] !== "CONNECT") return s.respond([[":status", "400"]], true);
        s.respond([[":status", "200"]]);
        s.on("data", (c) => s.write(c));
        s.once("end", () => s.end());
        s.resume();
      });
    });
    server = l.server;
    return l.port;
  }

  function nodeClient(port: number): ReturnType<typeof h2connect> {
    const session = h2connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 4 * 1024 * 1024, maxFrameSize: 1024 * 1024 } });
    session.on("error", () => undefined);
    cleanups.push(() => session.destroy());
    return session;
  }

  function nodeCollect(req: ClientHttp2Stream): Promise<Buffer> {
    const chunks: Buffer[] = [];
    return new Promise((resolve, reject) => {
      req.on("data", (c: Buffer) => chunks.push(c));
      req.once("end", () => resolve(Buffer.concat(chunks)));
      req.once("error", reject);
    });
  }

  it("answers CONNECT 200 and echoes 5 MiB", async () => {
    const port = await ourEchoServer();
    const session = nodeClient(port);
    await new Promise((r) => session.once("connect", r));
    session.setLocalWindowSize(16 * 1024 * 1024);
    const req = session.request({ ":method": "CONNECT", ":authority": "10.0.0.2:8080" }, { endStream: false });
    const status = await new Promise((r) => req.once("response", (h) => r(h[":status"])));
    expect(status).toBe(200);
    const data = payload(BIG, 2);
    const got = nodeCollect(req);
    req.end(data);
    expect(sha(await got)).toBe(sha(data));
  });

  it("answers a GET with 400 and END_STREAM", async () => {
    const port = await ourEchoServer();
    const session = nodeClient(port);
    const req = session.request({ ":method": "GET", ":path": "/" });
    const status = await new Promise((r) => req.once("response", (h) => r(h[":status"])));
    expect(status).toBe(400);
    await nodeCollect(req);
  });

  it("a client reset reaches the stream as an error with the client's code", async () => {
    let serverStream: H2Stream | undefined;
    const errored = new Promise<number>((resolve) => {
      void ourEchoServer((s) => {
        serverStream = s;
        s.respond([[":status", "200"]]);
        s.once("error", (e) => resolve(e.code));
        s.resume();
      }).then((port) => {
        const session = nodeClient(port);
        const req = session.request({ ":method": "CONNECT", ":authority": "10.0.0.2:8080" }, { endStream: false });
        req.once("response", () => req.close(h2c.NGHTTP2_CANCEL));
      });
    });
    expect(await errored).toBe(ErrorCode.CANCEL);
    expect(serverStream?.rstCode).toBe(ErrorCode.CANCEL);
  });
});
