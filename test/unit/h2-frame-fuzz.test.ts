import { Duplex } from "node:stream";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { H2Connection, type H2ConnectionOptions } from "../../src/ztunnel/proxy/h2/connection.js";
import { ErrorCode, Flag, FrameType, frameHeader, PREFACE, settingsFrame, SettingId } from "../../src/ztunnel/proxy/h2/frames.js";
import { HpackEncoder } from "../../src/ztunnel/proxy/h2/hpack-encoder.js";

// Frame-level fuzzing of the lean HTTP/2 layer (server role, which faces untrusted clients):
// table-driven protocol violations must end in the RFC 9113 error code (GOAWAY for connection
// errors, RST_STREAM for stream errors), and arbitrary frame sequences must never throw out of
// the connection, never hold more than one frame of input, and only ever answer with
// well-formed frames.

/** An in-memory socket: what we push is what the connection reads; its writes are captured. */
class MemSocket extends Duplex {
  readonly written: Buffer[] = [];
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.written.push(chunk);
    cb();
  }
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    for (const c of chunks) this.written.push(c.chunk);
    cb();
  }
  output(): Buffer {
    return Buffer.concat(this.written);
  }
}

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

function parseFrames(b: Buffer): Frame[] {
  const out: Frame[] = [];
  let off = 0;
  while (off + 9 <= b.length) {
    const len = (b[off] << 16) | (b[off + 1] << 8) | b[off + 2];
    expect(off + 9 + len).toBeLessThanOrEqual(b.length); // never a truncated frame
    out.push({ type: b[off + 3], flags: b[off + 4], streamId: b.readUInt32BE(off + 5) & 0x7fffffff, payload: b.subarray(off + 9, off + 9 + len) });
    off += 9 + len;
  }
  expect(off).toBe(b.length);
  return out;
}

const SMALL: H2ConnectionOptions = {
  role: "server",
  settings: { initialWindowSize: 65_535, maxFrameSize: 16_384, maxHeaderListSize: 4096, maxConcurrentStreams: 4 },
  connectionWindow: 65_535,
};

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([frameHeader(payload.length, type, flags, streamId), payload]);
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

/** Feeds bytes to a fresh server connection and lets its corked writes flush. */
async function run(input: Buffer[], opts = SMALL): Promise<{ frames: Frame[]; conn: H2Connection; streams: number }> {
  const sock = new MemSocket();
  const conn = new H2Connection(sock, opts);
  let streams = 0;
  conn.on("stream", (s) => {
    streams++;
    s.respond([[":status", "200"]]);
    s.on("error", () => undefined);
  });
  for (const b of input) sock.push(b);
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  return { frames: parseFrames(sock.output()), conn, streams };
}

const hello = [PREFACE, settingsFrame([])];
const enc = (): HpackEncoder => new HpackEncoder();
const CONNECT = (e: HpackEncoder, extra: Array<[string, string]> = []): Buffer => e.encode([[":method", "CONNECT"], [":authority", "10.0.0.1:80"], ...extra]);

function goawayCode(frames: Frame[]): number | undefined {
  const g = frames.find((f) => f.type === FrameType.GOAWAY);
  return g === undefined ? undefined : g.payload.readUInt32BE(4);
}

function rstCode(frames: Frame[], streamId: number): number | undefined {
  const r = frames.find((f) => f.type === FrameType.RST_STREAM && f.streamId === streamId);
  return r === undefined ? undefined : r.payload.readUInt32BE(0);
}

describe("protocol violations get the RFC's error code", () => {
  const connectionErrors: Array<[string, () => Buffer[], number]> = [
    ["no preface", () => [Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")], ErrorCode.PROTOCOL_ERROR],
    ["first frame not SETTINGS", () => [PREFACE, frame(FrameType.PING, 0, 0, Buffer.alloc(8))], ErrorCode.PROTOCOL_ERROR],
    ["frame over SETTINGS_MAX_FRAME_SIZE", () => [...hello, frameHeader(16_385, FrameType.DATA, 0, 1)], ErrorCode.FRAME_SIZE_ERROR],
    ["SETTINGS length not a multiple of 6", () => [PREFACE, frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(5))], ErrorCode.FRAME_SIZE_ERROR],
    ["SETTINGS ACK with payload", () => [...hello, frame(FrameType.SETTINGS, Flag.ACK, 0, Buffer.alloc(6))], ErrorCode.FRAME_SIZE_ERROR],
    ["SETTINGS on a stream", () => [PREFACE, frame(FrameType.SETTINGS, 0, 1)], ErrorCode.PROTOCOL_ERROR],
    ["ENABLE_PUSH 2", () => [PREFACE, settingsFrame([[SettingId.ENABLE_PUSH, 2]])], ErrorCode.PROTOCOL_ERROR],
    ["INITIAL_WINDOW_SIZE 2^31", () => [PREFACE, settingsFrame([[SettingId.INITIAL_WINDOW_SIZE, 2 ** 31]])], ErrorCode.FLOW_CONTROL_ERROR],
    ["MAX_FRAME_SIZE below 16384", () => [PREFACE, settingsFrame([[SettingId.MAX_FRAME_SIZE, 100]])], ErrorCode.PROTOCOL_ERROR],
    ["PING of 7 bytes", () => [...hello, frame(FrameType.PING, 0, 0, Buffer.alloc(7))], ErrorCode.FRAME_SIZE_ERROR],
    ["PING on a stream", () => [...hello, frame(FrameType.PING, 0, 1, Buffer.alloc(8))], ErrorCode.PROTOCOL_ERROR],
    ["GOAWAY shorter than 8", () => [...hello, frame(FrameType.GOAWAY, 0, 0, Buffer.alloc(4))], ErrorCode.FRAME_SIZE_ERROR],
    ["DATA on stream 0", () => [...hello, frame(FrameType.DATA, 0, 0, Buffer.from("x"))], ErrorCode.PROTOCOL_ERROR],
    ["DATA on an idle stream", () => [...hello, frame(FrameType.DATA, 0, 5, Buffer.from("x"))], ErrorCode.PROTOCOL_ERROR],
    ["RST_STREAM on an idle stream", () => [...hello, frame(FrameType.RST_STREAM, 0, 7, u32(8))], ErrorCode.PROTOCOL_ERROR],
    ["RST_STREAM of 3 bytes", () => [...hello, frame(FrameType.HEADERS, Flag.END_HEADERS, 1, CONNECT(enc())), frame(FrameType.RST_STREAM, 0, 1, Buffer.alloc(3))], ErrorCode.FRAME_SIZE_ERROR],
    ["WINDOW_UPDATE of 0 on the connection", () => [...hello, frame(FrameType.WINDOW_UPDATE, 0, 0, u32(0))], ErrorCode.PROTOCOL_ERROR],
    ["connection window overflow", () => [...hello, frame(FrameType.WINDOW_UPDATE, 0, 0, u32(2 ** 31 - 1))], ErrorCode.FLOW_CONTROL_ERROR],
    ["PUSH_PROMISE", () => [...hello, frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, u32(2))], ErrorCode.PROTOCOL_ERROR],
    ["HPACK garbage", () => [...hello, frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0xbe]))], ErrorCode.COMPRESSION_ERROR],
    ["even stream id from a client", () => [...hello, frame(FrameType.HEADERS, Flag.END_HEADERS, 2, CONNECT(enc()))], ErrorCode.PROTOCOL_ERROR],
    ["a frame inside a header block", () => [...hello, frame(FrameType.HEADERS, 0, 1, CONNECT(enc())), frame(FrameType.PING, 0, 0, Buffer.alloc(8))], ErrorCode.PROTOCOL_ERROR],
    ["CONTINUATION without HEADERS", () => [...hello, frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, Buffer.alloc(1))], ErrorCode.PROTOCOL_ERROR],
    [
      "CONTINUATION flood",
      () => [...hello, frame(FrameType.HEADERS, 0, 1, Buffer.alloc(0)), ...Array.from({ length: 40 }, () => frame(FrameType.CONTINUATION, 0, 1, Buffer.alloc(0)))],
      ErrorCode.ENHANCE_YOUR_CALM,
    ],
    [
      "header block over the byte limit",
      () => [...hello, frame(FrameType.HEADERS, 0, 1, Buffer.alloc(16_000)), ...Array.from({ length: 5 }, () => frame(FrameType.CONTINUATION, 0, 1, Buffer.alloc(16_000)))],
      ErrorCode.ENHANCE_YOUR_CALM,
    ],
    [
      "DATA past the connection window",
      () => {
        const e = enc();
        const fill = Array.from({ length: 4 }, (_, i) => [frame(FrameType.HEADERS, Flag.END_HEADERS, 1 + 2 * i, CONNECT(e)), frame(FrameType.DATA, 0, 1 + 2 * i, Buffer.alloc(16_384))]).flat();
        return [...hello, ...fill, frame(FrameType.HEADERS, Flag.END_HEADERS, 9, CONNECT(e)), frame(FrameType.DATA, 0, 9, Buffer.alloc(100))];
      },
      ErrorCode.FLOW_CONTROL_ERROR,
    ],
  ];
  for (const [name, input, code] of connectionErrors) {
    it(`GOAWAY ${code} for ${name}`, async () => {
      const r = await run(input());
      expect(goawayCode(r.frames)).toBe(code);
      expect(r.conn.closed).toBe(true);
    });
  }

  const streamErrors: Array<[string, (e: HpackEncoder) => Buffer[], number]> = [
    ["stream window overflow", (e) => [frame(FrameType.HEADERS, Flag.END_HEADERS, 1, CONNECT(e)), frame(FrameType.WINDOW_UPDATE, 0, 1, u32(2 ** 31 - 1))], ErrorCode.FLOW_CONTROL_ERROR],
    ["WINDOW_UPDATE of 0 on a stream", (e) => [frame(FrameType.HEADERS, Flag.END_HEADERS, 1, CONNECT(e)), frame(FrameType.WINDOW_UPDATE, 0, 1, u32(0))], ErrorCode.PROTOCOL_ERROR],
    [
      "DATA past the stream window",
      (e) => [
        frame(FrameType.HEADERS, Flag.END_HEADERS, 1, CONNECT(e)),
        ...Array.from({ length: 4 }, () => frame(FrameType.DATA, 0, 1, Buffer.alloc(16_383))),
        frame(FrameType.DATA, 0, 1, Buffer.alloc(100)),
      ],
      ErrorCode.FLOW_CONTROL_ERROR,
    ],
    ["upper-case header name", (e) => [frame(FrameType.HEADERS, Flag.END_HEADERS, 1, CONNECT(e, [["X-Big", "1"]]))], ErrorCode.PROTOCOL_ERROR],
    ["connection-specific header", (e) => [frame(FrameType.HEADERS, Flag.END_HEADERS, 1, CONNECT(e, [["connection", "close"]]))], ErrorCode.PROTOCOL_ERROR],
    ["DATA after END_STREAM", (e) => [frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, CONNECT(e)), frame(FrameType.DATA, 0, 1, Buffer.from("x"))], ErrorCode.STREAM_CLOSED],
    ["PRIORITY of 4 bytes", (e) => [frame(FrameType.HEADERS, Flag.END_HEADERS, 1, CONNECT(e)), frame(FrameType.PRIORITY, 0, 1, Buffer.alloc(4))], ErrorCode.FRAME_SIZE_ERROR],
    ["second HEADERS without END_STREAM", (e) => [frame(FrameType.HEADERS, Flag.END_HEADERS, 1, CONNECT(e)), frame(FrameType.HEADERS, Flag.END_HEADERS, 1, e.encode([["x-t", "1"]]))], ErrorCode.PROTOCOL_ERROR],
  ];
  for (const [name, input, code] of streamErrors) {
    it(`RST_STREAM ${code} for ${name}, connection stays up`, async () => {
      // A connection window wide enough that only the stream's can be exceeded.
      const r = await run([...hello, ...input(enc())], { ...SMALL, connectionWindow: 1 << 20 });
      expect(rstCode(r.frames, 1)).toBe(code);
      expect(goawayCode(r.frames)).toBeUndefined();
      expect(r.conn.closed).toBe(false);
      r.conn.destroy();
    });
  }

  it("refuses the stream past MAX_CONCURRENT_STREAMS with REFUSED_STREAM", async () => {
    const e = enc();
    const r = await run([...hello, ...Array.from({ length: 5 }, (_, i) => frame(FrameType.HEADERS, Flag.END_HEADERS, 1 + 2 * i, CONNECT(e)))]);
    expect(r.streams).toBe(4);
    expect(rstCode(r.frames, 9)).toBe(ErrorCode.REFUSED_STREAM);
    r.conn.destroy();
  });

  it("answers an oversize header list with 431, keeps HPACK in step and the connection up", async () => {
    const e = enc();
    const r = await run([
      ...hello,
      frame(FrameType.HEADERS, Flag.END_HEADERS, 1, CONNECT(e, [["x-big", "a".repeat(5000)]])),
      frame(FrameType.HEADERS, Flag.END_HEADERS, 3, CONNECT(e)),
    ]);
    const h1 = r.frames.find((f) => f.type === FrameType.HEADERS && f.streamId === 1);
    expect(h1?.flags !== undefined && (h1.flags & Flag.END_STREAM) !== 0).toBe(true);
    expect(r.streams).toBe(1); // stream 3 decoded fine after the oversize block
    expect(goawayCode(r.frames)).toBeUndefined();
    r.conn.destroy();
  });
});

describe("arbitrary frame sequences", () => {
  const frameArb = fc.record({
    type: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 10, max: 255 })),
    flags: fc.integer({ min: 0, max: 255 }),
    streamId: fc.oneof(fc.constantFrom(0, 1, 3, 5), fc.integer({ min: 0, max: 2 ** 31 - 1 })),
    payload: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ minLength: 16_000, maxLength: 17_000 })),
  });

  it("never throw, hold at most one frame, and answer only with well-formed frames", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(frameArb, { maxLength: 12 }), fc.integer({ min: 1, max: 40 }), async (frames, split) => {
        const e = enc();
        const bytes = Buffer.concat([
          ...hello,
          frame(FrameType.HEADERS, Flag.END_HEADERS, 1, CONNECT(e)),
          ...frames.map((f) => frame(f.type, f.flags, f.streamId, Buffer.from(f.payload))),
        ]);
        // Arrive in odd-sized pieces, as TLS records would.
        const pieces: Buffer[] = [];
        for (let off = 0; off < bytes.length; off += split * 97) pieces.push(bytes.subarray(off, off + split * 97));
        const r = await run(pieces);
        const g = goawayCode(r.frames);
        if (g !== undefined) expect(Object.values(ErrorCode)).toContain(g);
        for (const f of r.frames) if (f.type === FrameType.RST_STREAM) expect(Object.values(ErrorCode)).toContain(f.payload.readUInt32BE(0));
        expect(r.conn.activeStreams).toBeLessThanOrEqual(4);
        expect(r.conn.bufferedInput).toBeLessThanOrEqual(SMALL.settings.maxFrameSize + 9);
        r.conn.destroy();
      }),
      { numRuns: 300 },
    );
  });
});
