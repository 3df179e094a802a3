import { ErrorCode, Flag, FRAME_HEADER_LEN, FrameType, H2ProtocolError, PREFACE } from "./frames.js";

// Splits the decrypted byte stream into HTTP/2 frames. Every frame's declared length is checked
// against our SETTINGS_MAX_FRAME_SIZE before a byte of it is buffered, so input held here is at
// most one frame plus one socket read. Unpadded DATA is never reassembled: its payload is handed
// on as views into the received buffers as they arrive (zero copy, no 1 MiB frame in memory);
// the other frames are small and delivered whole, as a view when they sit in one buffer.

export interface FrameSink {
  /** A complete non-DATA frame, or a padded DATA frame (reassembled). */
  onFrame(type: number, flags: number, streamId: number, payload: Buffer): void;
  /** An unpadded DATA frame begins; its `length` bytes follow through onDataChunk. */
  onDataStart(flags: number, streamId: number, length: number): void;
  onDataChunk(streamId: number, chunk: Buffer): void;
  onDataEnd(flags: number, streamId: number): void;
}

type ReadState =
  | { readonly t: "preface" }
  | { readonly t: "header" }
  | { readonly t: "frame"; readonly type: number; readonly flags: number; readonly streamId: number; readonly length: number }
  | { readonly t: "data"; readonly flags: number; readonly streamId: number; remaining: number };

/** The state between frames: one object for every reader. */
const HEADER: ReadState = Object.freeze({ t: "header" });

export class FrameReader {
  private state: ReadState;
  private parts: Buffer[] = [];
  /** Bytes of parts[0] already consumed: kept as an offset, not re-sliced per frame. */
  private off = 0;
  private buffered = 0;
  private stopped = false;

  constructor(
    private readonly sink: FrameSink,
    /** Our advertised SETTINGS_MAX_FRAME_SIZE. */
    private readonly maxFrameSize: number,
    expectPreface: boolean,
  ) {
    this.state = expectPreface ? { t: "preface" } : HEADER;
  }

  /** Bytes held waiting for the rest of a frame (bounded by one frame). */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** The connection is gone: drop what is held and ignore later input. */
  stop(): void {
    this.stopped = true;
    this.parts = [];
    this.off = 0;
    this.buffered = 0;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0 || this.stopped) return;
    this.parts.push(chunk);
    this.buffered += chunk.length;
    while (!this.stopped) {
      const s = this.state;
      if (s.t === "data") {
        if (this.buffered === 0 && s.remaining > 0) return;
        // Hand on whatever part of the payload is here, as views.
        while (s.remaining > 0 && this.buffered > 0) {
          const head = this.parts[0];
          const off = this.off;
          const n = Math.min(head.length - off, s.remaining);
          const view = off === 0 && n === head.length ? head : head.subarray(off, off + n);
          this.consumeFront(n);
          s.remaining -= n;
          this.sink.onDataChunk(s.streamId, view);
        }
        if (s.remaining > 0) return;
        this.state = HEADER;
        this.sink.onDataEnd(s.flags, s.streamId);
        continue;
      }
      if (s.t === "preface") {
        if (this.buffered < PREFACE.length) {
          if (!PREFACE.subarray(0, this.buffered).equals(this.take(this.buffered, false))) {
            throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "the client did not send the HTTP/2 connection preface");
          }
          return;
        }
        if (!this.take(PREFACE.length, true).equals(PREFACE)) {
          throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "the client did not send the HTTP/2 connection preface");
        }
        this.state = HEADER;
        continue;
      }
      if (s.t === "header") {
        if (this.buffered < FRAME_HEADER_LEN) return;
        // The 9 header bytes are read where they are (no view) unless they straddle two reads.
        let h = this.parts[0];
        let o = this.off;
        if (h.length - o < FRAME_HEADER_LEN) {
          h = this.take(FRAME_HEADER_LEN, false);
          o = 0;
        }
        const length = (h[o] << 16) | (h[o + 1] << 8) | h[o + 2];
        const type = h[o + 3];
        const flags = h[o + 4];
        const streamId = h.readUInt32BE(o + 5) & 0x7fffffff; // the reserved bit is ignored
        this.consumeFront(FRAME_HEADER_LEN);
        if (length > this.maxFrameSize) {
          throw new H2ProtocolError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes exceeds SETTINGS_MAX_FRAME_SIZE ${this.maxFrameSize}`);
        }
        if (type === FrameType.DATA && (flags & Flag.PADDED) === 0) {
          this.state = { t: "data", flags, streamId, remaining: length };
          this.sink.onDataStart(flags, streamId, length);
          if (length === 0) {
            this.state = HEADER;
            this.sink.onDataEnd(flags, streamId);
          }
          continue;
        }
        this.state = { t: "frame", type, flags, streamId, length };
        continue;
      }
      // Whole frame.
      if (this.buffered < s.length) return;
      const payload = this.take(s.length, true);
      this.state = HEADER;
      this.sink.onFrame(s.type, s.flags, s.streamId, payload);
    }
  }

  /** The first n buffered bytes: a view when they sit in one buffer, else one copy. */
  private take(n: number, consume: boolean): Buffer {
    const head = this.parts[0];
    const off = this.off;
    let out: Buffer;
    if (n === 0) out = Buffer.alloc(0);
    else if (head.length - off >= n) out = off === 0 && n === head.length ? head : head.subarray(off, off + n);
    else {
      out = Buffer.allocUnsafe(n);
      let got = 0;
      let from = off;
      for (const p of this.parts) {
        const k = Math.min(p.length - from, n - got);
        p.copy(out, got, from, from + k);
        got += k;
        from = 0;
        if (got === n) break;
      }
    }
    if (consume) this.consumeFront(n);
    return out;
  }

  private consumeFront(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const head = this.parts[0];
      const left = head.length - this.off;
      if (left <= n) {
        this.parts.shift();
        this.off = 0;
        n -= left;
      } else {
        this.off += n;
        n = 0;
      }
    }
  }
}
