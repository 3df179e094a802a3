import type { ConnState, H2ConnectionOptions } from "./connection-types.js";
import type { FrameSink } from "./frame-reader.js";
import { ErrorCode, Flag, FrameType, H2ProtocolError, MAX_WINDOW } from "./frames.js";
import { HpackError, type HpackDecoder } from "./hpack-decoder.js";
import type { HeaderField } from "./hpack-table.js";
import { field, malformed } from "./headers.js";
import { applySettings, type PeerSettings } from "./settings.js";
import type { H2Stream } from "./stream.js";

// The receive side of an H2Connection: frame-by-frame checks of RFC 9113 §6 with the error
// each violation calls for, header blocks reassembled from HEADERS + CONTINUATION (bounded in
// bytes and frames) and decoded in order so HPACK state never diverges, DATA accounted against
// both windows before its bytes are handed on.

/** CONTINUATION frames one header block may take: more is a flood, not a header block. */
const MAX_CONTINUATIONS = 32;

interface PendingBlock {
  readonly streamId: number;
  readonly endStream: boolean;
  readonly parts: Buffer[];
  size: number;
  frames: number;
}

/** The connection as the receiver sees it. */
export interface ReceiverHost {
  readonly opts: H2ConnectionOptions;
  readonly state: ConnState;
  readonly streams: ReadonlyMap<number, H2Stream>;
  readonly peer: PeerSettings;
  readonly decoder: HpackDecoder;
  readonly maxHeaderBlock: number;
  readonly activeStreams: number;
  recvWindow: number;
  sendWindow: number;
  lastPeerStreamId: number;
  isOwnStreamId(id: number): boolean;
  openPeerStream(id: number): H2Stream;
  newPeerStream(s: H2Stream, headers: readonly HeaderField[]): void;
  streamError(streamId: number, code: number, why: string): void;
  consumed(s: H2Stream, n: number): void;
  consumedConnectionOnly(n: number): void;
  onPing(payload: Buffer, ack: boolean): void;
  onGoaway(lastStreamId: number, code: number): void;
  onPeerSettings(): void;
  onWindowUpdate(): void;
}

export class Receiver implements FrameSink {
  private block: PendingBlock | undefined;
  /** Where the DATA frame being read goes: a stream, or nowhere (its bytes only count). */
  private dataTarget: H2Stream | undefined;
  private settingsSeen = false;

  constructor(private readonly c: ReceiverHost) {}

  // END_STREAM is acted on at the frame's end (onDataEnd).
  onDataStart(_flags: number, streamId: number, length: number): void {
    this.dataTarget = this.acceptData(streamId, length);
  }

  onDataChunk(_streamId: number, chunk: Buffer): void {
    const s = this.dataTarget;
    if (s !== undefined && !s.closed) s.receiveData(chunk);
    else this.c.consumedConnectionOnly(chunk.length);
  }

  onDataEnd(flags: number, _streamId: number): void {
    const s = this.dataTarget;
    this.dataTarget = undefined;
    if (s !== undefined && !s.closed && (flags & Flag.END_STREAM) !== 0) s.receiveEnd();
  }

  onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.block !== undefined && type !== FrameType.CONTINUATION) {
      throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, `frame type ${type} inside a header block`);
    }
    if (!this.settingsSeen && type !== FrameType.SETTINGS) {
      throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "the first frame was not SETTINGS");
    }
    switch (type) {
      case FrameType.DATA:
        return this.paddedData(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.headers(flags, streamId, payload);
      case FrameType.CONTINUATION:
        return this.continuation(flags, streamId, payload);
      case FrameType.PRIORITY:
        if (streamId === 0) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (payload.length !== 5) throw new H2ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY payload is not 5 bytes", streamId);
        return; // priorities are advisory; HBONE streams are all equal
      case FrameType.RST_STREAM:
        return this.rstStream(streamId, payload);
      case FrameType.SETTINGS:
        return this.settings(flags, streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE although push is disabled");
      case FrameType.PING:
        if (streamId !== 0) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        if (payload.length !== 8) throw new H2ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "PING payload is not 8 bytes");
        return this.c.onPing(payload, (flags & Flag.ACK) !== 0);
      case FrameType.GOAWAY:
        if (streamId !== 0) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
        if (payload.length < 8) throw new H2ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes");
        return this.c.onGoaway(payload.readUInt32BE(0) & MAX_WINDOW, payload.readUInt32BE(4));
      case FrameType.WINDOW_UPDATE:
        return this.windowUpdate(streamId, payload);
      default:
        return; // unknown frame types are ignored (§4.1)
    }
  }

  /** Checks a DATA frame against state and windows; the stream that takes its bytes, if any. */
  private acceptData(streamId: number, length: number): H2Stream | undefined {
    if (!this.settingsSeen) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "the first frame was not SETTINGS");
    if (this.block !== undefined) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA inside a header block");
    if (streamId === 0) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    const c = this.c;
    if (length > c.recvWindow) throw new H2ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, `DATA of ${length} bytes exceeds the connection window (${c.recvWindow})`);
    c.recvWindow -= length;
    const s = c.streams.get(streamId);
    if (s === undefined) {
      if (this.isIdle(streamId)) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
      // A stream we closed or reset: frames in flight are ignored, their bytes still count.
      return undefined;
    }
    if (!s.headersSeen) {
      c.streamError(streamId, ErrorCode.PROTOCOL_ERROR, "DATA before HEADERS");
      return undefined;
    }
    if (s.remoteEnded) {
      c.streamError(streamId, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
      return undefined;
    }
    if (length > s.recvWindow) {
      c.streamError(streamId, ErrorCode.FLOW_CONTROL_ERROR, `DATA of ${length} bytes exceeds the stream window (${s.recvWindow})`);
      return undefined;
    }
    s.recvWindow -= length;
    return s;
  }

  private paddedData(flags: number, streamId: number, payload: Buffer): void {
    const body = this.unpad(flags, payload);
    const s = this.acceptData(streamId, payload.length);
    if (s === undefined || s.closed) {
      this.c.consumedConnectionOnly(payload.length);
      return;
    }
    // Padding counts against both windows but is nobody's data: consumed right away.
    this.c.consumed(s, payload.length - body.length);
    if (body.length > 0) s.receiveData(Buffer.from(body));
    if ((flags & Flag.END_STREAM) !== 0) s.receiveEnd();
  }

  private headers(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let frag = this.unpad(flags, payload);
    if ((flags & Flag.PRIORITY) !== 0) {
      if (frag.length < 5) throw new H2ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS priority fields truncated");
      frag = frag.subarray(5);
    }
    const complete = (flags & Flag.END_HEADERS) !== 0;
    // The frame reader hands out views into socket buffers; a block that continues outlives them.
    this.block = { streamId, endStream: (flags & Flag.END_STREAM) !== 0, parts: [complete ? frag : Buffer.from(frag)], size: frag.length, frames: 1 };
    this.checkBlockSize();
    if (complete) this.completeBlock();
  }

  private continuation(flags: number, streamId: number, payload: Buffer): void {
    const b = this.block;
    if (b === undefined || b.streamId !== streamId) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without a header block on its stream");
    b.parts.push((flags & Flag.END_HEADERS) !== 0 ? payload : Buffer.from(payload));
    b.size += payload.length;
    b.frames++;
    this.checkBlockSize();
    if ((flags & Flag.END_HEADERS) !== 0) this.completeBlock();
  }

  private checkBlockSize(): void {
    const b = this.block as PendingBlock;
    if (b.size > this.c.maxHeaderBlock) throw new H2ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, `header block over ${this.c.maxHeaderBlock} bytes`);
    if (b.frames > MAX_CONTINUATIONS) throw new H2ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, `header block in more than ${MAX_CONTINUATIONS} frames`);
  }

  private completeBlock(): void {
    const b = this.block as PendingBlock;
    this.block = undefined;
    const raw = b.parts.length === 1 ? b.parts[0] : Buffer.concat(b.parts, b.size);
    let decoded;
    try {
      decoded = this.c.decoder.decode(raw);
    } catch (err) {
      if (err instanceof HpackError) throw new H2ProtocolError(ErrorCode.COMPRESSION_ERROR, err.message);
      throw err;
    }
    const c = this.c;
    const id = b.streamId;
    const existing = c.streams.get(id);
    if (existing !== undefined) return this.laterHeaders(existing, decoded.headers, b.endStream);
    if (c.opts.role === "client" || c.isOwnStreamId(id)) {
      if (this.isIdle(id)) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${id}, which we never opened`);
      return; // a stream we already closed: its HEADERS were decoded (HPACK state), nothing else
    }
    // Server: a new request stream.
    if (id % 2 === 0) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, `client opened even stream ${id}`);
    if (id <= c.lastPeerStreamId) throw new H2ProtocolError(ErrorCode.STREAM_CLOSED, `HEADERS on closed stream ${id}`);
    c.lastPeerStreamId = id;
    if (c.state.t !== "open") return c.streamError(id, ErrorCode.REFUSED_STREAM, "connection is closing");
    const max = c.opts.settings.maxConcurrentStreams ?? Infinity;
    if (c.activeStreams >= max) return c.streamError(id, ErrorCode.REFUSED_STREAM, `more than ${max} concurrent streams`);
    const bad = decoded.oversize ? undefined : malformed(decoded.headers, "request");
    if (bad !== undefined) return c.streamError(id, ErrorCode.PROTOCOL_ERROR, `malformed request: ${bad}`);
    const s = c.openPeerStream(id);
    s.headersSeen = true;
    if (decoded.oversize) {
      // RFC 9113 §10.5.1: answer 431 rather than drop the connection (HPACK stayed in step),
      // then RST_STREAM(NO_ERROR): the request body is not wanted (§8.1).
      s.respond([[":status", "431"]], true);
      s.close(ErrorCode.NO_ERROR);
      return;
    }
    if (b.endStream) s.receiveEnd();
    c.newPeerStream(s, decoded.headers);
  }

  /** A response on our stream, or trailers on either side. */
  private laterHeaders(s: H2Stream, headers: readonly HeaderField[], endStream: boolean): void {
    const c = this.c;
    if (s.remoteEnded) return c.streamError(s.id, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM");
    if (c.opts.role === "client" && !s.headersSeen) {
      const bad = malformed(headers, "response");
      if (bad !== undefined) return c.streamError(s.id, ErrorCode.PROTOCOL_ERROR, `malformed response: ${bad}`);
      const status = Number(field(headers, ":status"));
      if (status >= 100 && status < 200) {
        if (endStream) return c.streamError(s.id, ErrorCode.PROTOCOL_ERROR, "informational response with END_STREAM");
        return; // 1xx: the final response follows
      }
      s.headersSeen = true;
      s.emit("response", headers);
      if (endStream) s.receiveEnd();
      return;
    }
    // Trailers: must end the stream and carry no pseudo-headers.
    if (!endStream) return c.streamError(s.id, ErrorCode.PROTOCOL_ERROR, "second HEADERS without END_STREAM");
    const bad = malformed(headers, "trailers");
    if (bad !== undefined) return c.streamError(s.id, ErrorCode.PROTOCOL_ERROR, `malformed trailers: ${bad}`);
    s.receiveEnd();
  }

  private rstStream(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (payload.length !== 4) throw new H2ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM payload is not 4 bytes");
    if (this.isIdle(streamId)) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
    this.c.streams.get(streamId)?.receiveReset(payload.readUInt32BE(0), "remote-reset");
  }

  private settings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if ((flags & Flag.ACK) !== 0) {
      if (payload.length !== 0) throw new H2ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      if (!this.settingsSeen) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "the first frame was not SETTINGS");
      return;
    }
    if (payload.length % 6 !== 0) throw new H2ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS payload is not a multiple of 6 bytes");
    this.settingsSeen = true;
    const c = this.c;
    const before = c.peer.initialWindowSize;
    applySettings(payload, c.peer);
    const delta = c.peer.initialWindowSize - before;
    if (delta !== 0) {
      for (const s of c.streams.values()) {
        s.sendWindow += delta;
        if (s.sendWindow > MAX_WINDOW) throw new H2ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, `stream ${s.id} window overflows with the new initial window size`);
      }
    }
    c.onPeerSettings();
  }

  private windowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new H2ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE payload is not 4 bytes");
    const inc = payload.readUInt32BE(0) & MAX_WINDOW;
    const c = this.c;
    if (streamId === 0) {
      if (inc === 0) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0 on the connection");
      if (c.sendWindow + inc > MAX_WINDOW) throw new H2ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflows 2^31-1");
      c.sendWindow += inc;
      return c.onWindowUpdate();
    }
    if (this.isIdle(streamId)) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${streamId}`);
    const s = c.streams.get(streamId);
    if (s === undefined) return;
    if (inc === 0) return c.streamError(streamId, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
    if (s.sendWindow + inc > MAX_WINDOW) return c.streamError(streamId, ErrorCode.FLOW_CONTROL_ERROR, "stream window overflows 2^31-1");
    s.sendWindow += inc;
    c.onWindowUpdate();
  }

  private unpad(flags: number, payload: Buffer): Buffer {
    if ((flags & Flag.PADDED) === 0) return payload;
    if (payload.length < 1) throw new H2ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "padded frame without a pad length");
    const pad = payload[0];
    if (pad >= payload.length) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, "padding as long as the frame");
    return payload.subarray(1, payload.length - pad);
  }

  /** A stream id in the "idle" state: never opened by either side. */
  private isIdle(id: number): boolean {
    const c = this.c;
    if (c.isOwnStreamId(id)) return false;
    const ownParity = (id % 2 === 1) === (c.opts.role === "client");
    if (ownParity) return true; // ours, but beyond what we opened
    return id > c.lastPeerStreamId;
  }
}
