import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { batch, CorkedWriter, SMALL_BATCH } from "../../src/ztunnel/proxy/h2/corked-writer.js";
import { COPY_FRAME_MAX, writeDataFrame } from "../../src/ztunnel/proxy/h2/data-frame.js";
import { Flag, FRAME_HEADER_LEN, FrameType } from "../../src/ztunnel/proxy/h2/frames.js";
import { dialLoopback, listenLoopback, loopbackScope } from "../fixtures/loopback.js";

// How the lean HTTP/2 layer hands bytes to its socket: DATA frames (one buffer when small) and
// the corked batches (sent when the writing callback returns if small, at the check phase if not).

function header(b: Buffer): { length: number; type: number; flags: number; streamId: number } {
  return { length: (b[0] << 16) | (b[1] << 8) | b[2], type: b[3], flags: b[4], streamId: b.readUInt32BE(5) };
}

describe("writeDataFrame", () => {
  it("a small frame is one buffer: header and the payload gathered from several queued writes", () => {
    const queue = [Buffer.from("hello "), Buffer.from("wor"), Buffer.from("ld and more")];
    const out: Buffer[] = [];
    writeDataFrame(queue, 12, Flag.END_STREAM, 7, (b) => out.push(b));
    expect(out).toHaveLength(1);
    expect(header(out[0])).toEqual({ length: 12, type: FrameType.DATA, flags: Flag.END_STREAM, streamId: 7 });
    expect(out[0].subarray(FRAME_HEADER_LEN).toString()).toBe("hello world ");
    // What the frame did not take stays queued, in order.
    expect(Buffer.concat(queue).toString()).toBe("and more");
  });

  it("a frame above the copy limit goes out as its header and views of the queued buffers", () => {
    const big = Buffer.alloc(COPY_FRAME_MAX + 100, 0x61);
    const queue = [big, Buffer.from("tail")];
    const out: Buffer[] = [];
    writeDataFrame(queue, COPY_FRAME_MAX + 102, 0, 3, (b) => out.push(b));
    expect(out).toHaveLength(3);
    expect(header(out[0])).toEqual({ length: COPY_FRAME_MAX + 102, type: FrameType.DATA, flags: 0, streamId: 3 });
    expect(out[1]).toBe(big); // the caller's buffer itself: no copy
    expect(out[2].toString()).toBe("ta");
    expect(queue.map((b) => b.toString())).toEqual(["il"]);
  });
});

describe("CorkedWriter", () => {
  const { track, serve } = loopbackScope();

  async function pair(): Promise<{ client: Socket; received: () => number }> {
    let got = 0;
    const l = await listenLoopback((s) => {
      track(s).on("data", (d: Buffer) => (got += d.length));
    });
    serve(l.server);
    const client = track(await dialLoopback(l.port));
    return { client, received: () => got };
  }

  /** Resolves after the microtasks queued before it (the writer's own settle check among them). */
  const afterCallback = (): Promise<void> => new Promise((r) => queueMicrotask(r));

  it("a small batch leaves when the writing callback returns, before the check phase", async () => {
    const { client } = await pair();
    const w = new CorkedWriter(client);
    w.write(Buffer.alloc(100, 1));
    w.write(Buffer.alloc(900, 2));
    expect(client.writableLength).toBe(1000); // corked while the callback runs
    let immediateRan = false;
    setImmediate(() => (immediateRan = true));
    await afterCallback();
    expect(immediateRan).toBe(false);
    expect(client.writableLength).toBe(0);
    expect(client.bytesWritten).toBe(1000);
  });

  it("a batch of SMALL_BATCH bytes or more waits for the rest of the event-loop turn, then leaves whole", async () => {
    const { client, received } = await pair();
    const w = new CorkedWriter(client);
    w.write(Buffer.alloc(SMALL_BATCH, 1));
    await afterCallback();
    expect(client.writableLength).toBe(SMALL_BATCH); // still corked: more may come this turn
    w.write(Buffer.alloc(10, 2));
    await new Promise((r) => setImmediate(r));
    expect(client.writableLength).toBe(0);
    expect(client.bytesWritten).toBe(SMALL_BATCH + 10);
    await new Promise<void>((r) => {
      const check = (): void => (received() === SMALL_BATCH + 10 ? r() : void setImmediate(check));
      check();
    });
  });

  it("inside batch(), a small batch leaves when the outermost batch returns, with no microtask turn", async () => {
    const { client } = await pair();
    const w = new CorkedWriter(client);
    let microtaskRan = false;
    queueMicrotask(() => (microtaskRan = true));
    batch(() => {
      w.write(Buffer.alloc(100, 1));
      batch(() => w.write(Buffer.alloc(200, 2)), undefined);
      expect(client.writableLength).toBe(300); // the inner batch's return settles nothing
    }, undefined);
    expect(microtaskRan).toBe(false);
    expect(client.writableLength).toBe(0);
    expect(client.bytesWritten).toBe(300);
  });

  it("inside batch(), a batch of SMALL_BATCH bytes or more still waits for the check phase", async () => {
    const { client } = await pair();
    const w = new CorkedWriter(client);
    batch(() => w.write(Buffer.alloc(SMALL_BATCH, 1)), undefined);
    expect(client.writableLength).toBe(SMALL_BATCH);
    await new Promise((r) => setImmediate(r));
    expect(client.writableLength).toBe(0);
    expect(client.bytesWritten).toBe(SMALL_BATCH);
  });

  it("a batch() whose handler throws still settles what it held", async () => {
    const { client } = await pair();
    const w = new CorkedWriter(client);
    expect(() =>
      batch(() => {
        w.write(Buffer.alloc(10, 1));
        throw new Error("handler failed");
      }, undefined),
    ).toThrow("handler failed");
    expect(client.writableLength).toBe(0);
    // The next batch starts from depth 0: it settles on return as well.
    batch(() => w.write(Buffer.alloc(5, 1)), undefined);
    expect(client.writableLength).toBe(0);
    expect(client.bytesWritten).toBe(15);
  });

  it("flush() sends a held batch at once", async () => {
    const { client } = await pair();
    const w = new CorkedWriter(client);
    w.write(Buffer.alloc(SMALL_BATCH * 2, 1));
    w.flush();
    expect(client.writableLength).toBe(0);
    expect(client.bytesWritten).toBe(SMALL_BATCH * 2);
    await afterCallback(); // the pending settle finds nothing held
    expect(client.writableLength).toBe(0);
  });
});
