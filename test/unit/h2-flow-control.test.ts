import type { Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { H2Connection } from "../../src/ztunnel/proxy/h2/connection.js";
import { headerObject } from "../../src/ztunnel/proxy/h2/headers.js";
import { collect, HBONE_H2, listenLoopback, ourClient, payload, send, serverOpts, sha } from "../fixtures/h2-peers.js";

// Connection-level flow control across streams that end without their data being read. DATA
// counts against the connection window when it arrives; bytes a stream drops unread (its
// consumer reset it, or gave up after a clean end) must still be returned to the peer, or each
// such stream shrinks the pooled connection's window for good. iperf3 -P 4 through HBONE wedged
// that way: its streams are torn down with megabytes in flight, and after four runs the 16 MiB
// window was gone and the next run's control bytes never arrived.

const MiB = 1024 * 1024;
const HELD = 3 * MiB; // under the 4 MiB stream window: all of it arrives while the stream is paused
const ROUNDS = Math.ceil((HBONE_H2.connectionWindow * 1.5) / HELD); // well past the connection window

type Mode = "reset" | "destroy after a clean end";

let server: Server | undefined;
let client: H2Connection | undefined;
afterEach(() => {
  client?.destroy();
  server?.close();
});

/** Resolves once `ready()` holds, checked after every chunk the connection parsed. */
function whenParsed(conn: H2Connection, ready: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    // Frames are parsed in the connection's own 'data' handler, registered before this one.
    const check = (): void => {
      if (!ready()) return;
      conn.socket.off("data", check);
      resolve();
    };
    conn.socket.on("data", check);
    check();
  });
}

/** A server whose "sink" streams never read (a stuck upstream) and then give up. */
async function serve(mode: Mode): Promise<{ port: number; dropped: AsyncIterator<void> }> {
  const drops: Array<() => void> = [];
  let pending = 0;
  const dropped: AsyncIterator<void> = {
    next: () =>
      new Promise((resolve) => {
        if (pending > 0) {
          pending--;
          resolve({ value: undefined, done: false });
        } else drops.push(() => resolve({ value: undefined, done: false }));
      }),
  };
  const droppedOne = (): void => {
    const w = drops.shift();
    if (w !== undefined) w();
    else pending++;
  };
  const l = await listenLoopback((sock) => {
    const conn = new H2Connection(sock, serverOpts());
    conn.on("stream", (s, headers) => {
      s.on("error", () => undefined);
      s.respond([[":status", "200"]]);
      if (headerObject(headers)[":authority"] === "echo:80") {
        s.on("data", (c) => s.write(c));
        s.once("end", () => s.end());
        s.resume();
        return;
      }
      const closed = new Promise<void>((r) => s.once("close", () => r()));
      const full = mode === "reset" ? () => s.readableLength === HELD : () => s.readableLength === HELD && s.remoteEnded;
      void whenParsed(conn, full).then(async () => {
        if (mode === "destroy after a clean end") s.end(); // both sides ended: closed, data unread
        s.destroy();
        await closed; // for a cleanly ended stream, 'close' waited for the unread data
        droppedOne();
      });
    });
  });
  server = l.server;
  return { port: l.port, dropped };
}

describe("lean HTTP/2: bytes a stream drops unread go back to the connection window", () => {
  for (const mode of ["reset", "destroy after a clean end"] as const) {
    it(`${mode}: ${ROUNDS} streams of ${HELD / MiB} MiB dropped unread, then a new stream still moves 1 MiB`, async () => {
      const { port, dropped } = await serve(mode);
      client = await ourClient(port);
      const c = client;
      let round = 0;
      const scenario = async (): Promise<Buffer> => {
        for (; round < ROUNDS; round++) {
          const s = c.request([[":method", "CONNECT"], [":authority", "sink:80"]]);
          s.on("error", () => undefined);
          s.resume();
          const data = payload(HELD, round + 1);
          if (mode === "reset") s.write(data);
          else s.end(data);
          await dropped.next();
        }
        const echo = c.request([[":method", "CONNECT"], [":authority", "echo:80"]]);
        const got = collect(echo);
        await send(echo, payload(MiB, 99));
        return await got;
      };
      const stalled = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`stalled at round ${round} of ${ROUNDS} (a leaked connection window)`)), 20_000).unref(),
      );
      expect(sha(await Promise.race([scenario(), stalled]))).toBe(sha(payload(MiB, 99)));
    }, 30_000);
  }
});
