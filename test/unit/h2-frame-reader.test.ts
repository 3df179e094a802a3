import { describe, expect, it } from "vitest";
import { FrameReader, type FrameSink } from "../../src/ztunnel/proxy/h2/frame-reader.js";
import { Flag, frameHeader, FrameType, H2ProtocolError, pingFrame, PREFACE, rstStreamFrame, settingsFrame, windowUpdateFrame } from "../../src/ztunnel/proxy/h2/frames.js";

/** What a sink saw, with DATA payload chunks joined per frame (their split is the reader's business). */
function recorder(): { sink: FrameSink; events: string[] } {
  const events: string[] = [];
  let data: Buffer[] = [];
  const sink: FrameSink = {
    onFrame: (type, flags, streamId, payload) => events.push(`frame ${type} ${flags} ${streamId} ${payload.toString("hex")}`),
    onDataStart: (flags, streamId, length) => {
      data = [];
      events.push(`data-start ${flags} ${streamId} ${length}`);
    },
    onDataChunk: (_id, chunk) => data.push(Buffer.from(chunk)),
    onDataEnd: (flags, streamId) => events.push(`data ${flags} ${streamId} ${Buffer.concat(data).toString("hex")}`),
  };
  return { sink, events };
}

function dataFrame(streamId: number, payload: Buffer, flags = 0): Buffer {
  return Buffer.concat([frameHeader(payload.length, FrameType.DATA, flags, streamId), payload]);
}

const WIRE = Buffer.concat([
  PREFACE,
  settingsFrame([[0x4, 65535]]),
  frameHeader(3, FrameType.HEADERS, Flag.END_HEADERS, 1),
  Buffer.from([0x82, 0x86, 0x84]),
  dataFrame(1, Buffer.from("hello, stream one")),
  dataFrame(1, Buffer.alloc(0), Flag.END_STREAM),
  pingFrame(Buffer.from("12345678"), false),
  windowUpdateFrame(0, 1000),
  dataFrame(3, Buffer.alloc(300, 0x61)),
  rstStreamFrame(3, 8),
]);

function feed(pieces: Buffer[]): string[] {
  const { sink, events } = recorder();
  const r = new FrameReader(sink, 16_384, true);
  for (const p of pieces) r.push(p);
  expect(r.pendingBytes).toBe(0);
  return events;
}

describe("FrameReader: the same frames however the bytes arrive", () => {
  const whole = feed([WIRE]);

  it("reads every frame of one buffer", () => {
    // 5 frames whole, 3 DATA frames as start + joined payload.
    expect(whole).toHaveLength(11);
    expect(whole[0]).toBe(`frame ${FrameType.SETTINGS} 0 0 00040000ffff`);
    expect(whole).toContain(`data 0 1 ${Buffer.from("hello, stream one").toString("hex")}`);
    expect(whole).toContain(`data ${Flag.END_STREAM} 1 `);
  });

  it("splits at every size from 1 to 40 bytes", () => {
    for (let size = 1; size <= 40; size++) {
      const pieces: Buffer[] = [];
      for (let off = 0; off < WIRE.length; off += size) pieces.push(WIRE.subarray(off, off + size));
      expect(feed(pieces)).toEqual(whole);
    }
  });

  it("splits at two points anywhere", () => {
    for (let i = 1; i < WIRE.length; i += 7) {
      for (let j = i; j < WIRE.length; j += 13) {
        expect(feed([WIRE.subarray(0, i), WIRE.subarray(i, j), WIRE.subarray(j)])).toEqual(whole);
      }
    }
  });

  it("refuses a frame over the max frame size before buffering it, however it arrives", () => {
    const big = Buffer.concat([PREFACE, frameHeader(20_000, FrameType.HEADERS, 0, 1)]);
    for (const size of [1, 5, big.length]) {
      const r = new FrameReader(recorder().sink, 16_384, true);
      expect(() => {
        for (let off = 0; off < big.length; off += size) r.push(big.subarray(off, off + size));
      }).toThrow(H2ProtocolError);
    }
  });
});
