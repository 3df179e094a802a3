import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { FrameReader } from "./frame-reader.js";
import {
  DEFAULT_WINDOW,
  ErrorCode,
  errorName,
  Flag,
  FrameType,
  frameHeader,
  goawayFrame,
  H2ProtocolError,
  headersFrames,
  MAX_WINDOW,
  pingFrame,
  PREFACE,
  rstStreamFrame,
  settingsAck,
  settingsFrame,
  windowUpdateFrame,
} from "./frames.js";
import { HpackDecoder } from "./hpack-decoder.js";
import { HpackEncoder } from "./hpack-encoder.js";
import type { HeaderField } from "./hpack-table.js";
import { Receiver, type ReceiverHost } from "./receiver.js";
import { batch, CorkedWriter } from "./corked-writer.js";
import { writeDataFrame } from "./data-frame.js";
import { DEFAULT_PEER_SETTINGS, localSettingsList, type PeerSettings } from "./settings.js";
import { H2ConnectionError, type ConnState, type H2ConnectionEvents, type H2ConnectionOptions } from "./connection-types.js";

export { H2ConnectionError, type ConnState, type H2ConnectionEvents, type H2ConnectionOptions };
import { H2Stream, H2StreamError, STREAM_HIGH_WATER, type StreamHost } from "./stream.js";

// One HTTP/2 connection over an already secured socket, speaking only what HBONE needs. It owns
// the send side: frames are written to the socket corked for the rest of the event-loop turn, so
// the frames of one turn leave in one writev; DATA is cut at the peer's SETTINGS_MAX_FRAME_SIZE
// and both flow-control windows, and waits (in its stream's queue) while either is closed or the
// socket is backed up. Receiving is receiver.ts. Errors follow RFC 9113 §5.4: a connection
// error sends GOAWAY with its code and closes; a stream error sends RST_STREAM.

/** Socket bytes queued past which DATA waits for 'drain' (other frames still go out). */
const SOCKET_HIGH_WATER = 1024 * 1024;
/** Control frames (PING/SETTINGS acks, resets) a peer may make us queue behind a stuck socket. */
const MAX_QUEUED_CONTROL = 4 * 1024 * 1024;

export class H2Connection extends EventEmitter<H2ConnectionEvents> implements StreamHost, ReceiverHost {
  state: ConnState = { t: "open" };
  readonly peer: PeerSettings = { ...DEFAULT_PEER_SETTINGS };
  remoteSettingsSeen = false;
  readonly streams = new Map<number, H2Stream>();
  /** Highest stream id the peer opened (GOAWAY's last-stream-id) and we opened. */
  lastPeerStreamId = 0;
  private nextStreamId: number;
  sendWindow = DEFAULT_WINDOW;
  recvWindow = DEFAULT_WINDOW;
  private recvUnacked = 0;
  readonly encoder: HpackEncoder;
  readonly decoder: HpackDecoder;
  private readonly reader: FrameReader;
  goawayReceived: { code: number; lastStreamId: number } | undefined;
  private goawaySent = false;
  /** Streams with queued DATA waiting for window or for the socket. */
  private readonly blocked = new Set<H2Stream>();
  private socketBlocked = false;
  private readonly out: CorkedWriter;
  private pingSeq = 0;
  private readonly pings = new Map<string, () => void>();

  constructor(
    readonly socket: Duplex,
    readonly opts: H2ConnectionOptions,
  ) {
    super();
    this.out = new CorkedWriter(socket);
    const s = opts.settings;
    this.nextStreamId = opts.role === "client" ? 1 : 2;
    this.encoder = new HpackEncoder(4096, opts.hpack);
    this.decoder = new HpackDecoder(4096, s.maxHeaderListSize);
    const receiver = new Receiver(this);
    this.reader = new FrameReader(receiver, s.maxFrameSize, opts.role === "server");
    // One batch per TLS read: the frames it makes us send and the bytes its DATA makes the
    // relay write to app sockets leave when the read is handled (corked-writer.ts).
    socket.on("data", (chunk: Buffer) => batch(this.onData, chunk));
    socket.on("drain", () => this.onSocketDrain());
    socket.once("end", () => this.closeNow(new H2ConnectionError(ErrorCode.CANCEL, "peer closed the connection", "transport"), false));
    socket.once("close", () => this.closeNow(new H2ConnectionError(ErrorCode.CANCEL, "connection closed", "transport"), false));
    socket.on("error", (err: Error) => this.closeNow(new H2ConnectionError(ErrorCode.INTERNAL_ERROR, `socket: ${err.message}`, "transport"), false));
    if (opts.role === "client") this.write(PREFACE);
    this.write(settingsFrame(localSettingsList(s)));
    if (opts.connectionWindow > DEFAULT_WINDOW) {
      this.write(windowUpdateFrame(0, opts.connectionWindow - DEFAULT_WINDOW));
      this.recvWindow = opts.connectionWindow;
    }
  }

  get closed(): boolean {
    return this.state.t === "closed";
  }

  /** The peer's SETTINGS as they stand (defaults until its first SETTINGS frame). */
  get remoteSettings(): Readonly<PeerSettings> {
    return this.peer;
  }

  /** Input bytes held waiting for the rest of a frame (at most one frame). */
  get bufferedInput(): number {
    return this.reader.pendingBytes;
  }

  /** Streams open now (either side). */
  get activeStreams(): number {
    return this.streams.size;
  }

  /** Client: a new stream is possible now (not draining, under the peer's concurrency limit). */
  canOpenStream(): boolean {
    if (this.state.t !== "open" || this.goawayReceived !== undefined) return false;
    if (this.nextStreamId > MAX_WINDOW) return false;
    return this.streams.size < (this.peer.maxConcurrentStreams ?? Infinity);
  }

  /** Client: opens a stream with these request headers (END_STREAM not set). */
  request(headers: readonly HeaderField[]): H2Stream {
    if (this.opts.role !== "client") throw new Error("only an HTTP/2 client opens streams");
    if (!this.canOpenStream()) throw new H2ConnectionError(ErrorCode.REFUSED_STREAM, "no new stream possible on this connection", "local");
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const s = new H2Stream(id, this, this.peer.initialWindowSize, this.opts.settings.initialWindowSize);
    this.streams.set(id, s);
    this.sendHeaders(s, headers, false);
    return s;
  }

  /** Sends a PING; `onAck` runs when the peer answers. False if the connection is closed. */
  ping(onAck: () => void): boolean {
    if (this.state.t === "closed") return false;
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(++this.pingSeq, 4);
    this.pings.set(payload.toString("latin1"), onAck);
    this.write(pingFrame(payload, false));
    return true;
  }

  /** No new streams; GOAWAY(NO_ERROR) now; the socket closes once the open streams finish. */
  close(): void {
    if (this.state.t !== "open") return;
    this.state = { t: "draining", code: ErrorCode.NO_ERROR };
    this.sendGoaway(ErrorCode.NO_ERROR, "");
    if (this.streams.size === 0) this.closeNow(undefined, true);
  }

  /** Closes now: open streams are reset (CANCEL), GOAWAY is sent if the socket still works. */
  destroy(err?: Error): void {
    if (this.state.t === "closed") return;
    this.sendGoaway(err === undefined ? ErrorCode.NO_ERROR : ErrorCode.CANCEL, err?.message ?? "");
    this.closeNow(err, true);
  }

  // ---- StreamHost ----

  flushStream(s: H2Stream): void {
    if (this.state.t === "closed" || s.closed || s.localEnded) return;
    const maxFrame = this.peer.maxFrameSize;
    while (s.outBytes > 0) {
      const n = Math.min(s.outBytes, s.sendWindow, this.sendWindow, maxFrame);
      if (n <= 0 || this.socketBlocked) {
        this.blocked.add(s);
        maybeDrain(s);
        return;
      }
      const last = s.endQueued && n === s.outBytes;
      writeDataFrame(s.out, n, last ? Flag.END_STREAM : 0, s.id, this.write);
      s.outBytes -= n;
      s.sendWindow -= n;
      this.sendWindow -= n;
      if (this.socket.writableLength >= SOCKET_HIGH_WATER) this.socketBlocked = true;
      if (last) {
        this.blocked.delete(s);
        s.localEndSent();
        return;
      }
    }
    this.blocked.delete(s);
    if (s.endQueued) {
      this.write(frameHeader(0, FrameType.DATA, Flag.END_STREAM, s.id));
      s.localEndSent();
    }
    maybeDrain(s);
  }

  sendHeaders(s: H2Stream, headers: readonly HeaderField[], endStream: boolean): void {
    if (this.state.t === "closed") return;
    const block = this.encoder.encode(headers);
    this.write(headersFrames(s.id, block, endStream, this.peer.maxFrameSize));
  }

  sendReset(s: H2Stream, code: number): void {
    if (this.state.t === "closed") return;
    this.writeControl(rstStreamFrame(s.id, code));
  }

  consumed(s: H2Stream, n: number): void {
    if (this.state.t === "closed") return;
    this.consumedConnectionOnly(n);
    if (s.remoteEnded) return;
    s.recvUnacked += n;
    if (s.recvUnacked >= this.opts.settings.initialWindowSize / 2) {
      this.write(windowUpdateFrame(s.id, s.recvUnacked));
      s.recvWindow += s.recvUnacked;
      s.recvUnacked = 0;
    }
  }

  streamClosed(s: H2Stream): void {
    this.streams.delete(s.id);
    this.blocked.delete(s);
    if (this.streams.size === 0 && this.state.t === "draining") this.closeNow(undefined, true);
  }

  // ---- used by the receiver ----

  /** @internal bytes of a frame nobody consumes (unknown or reset stream) still count. */
  consumedConnectionOnly(n: number): void {
    if (this.state.t === "closed" || n === 0) return;
    this.recvUnacked += n;
    if (this.recvUnacked >= this.opts.connectionWindow / 2) {
      this.write(windowUpdateFrame(0, this.recvUnacked));
      this.recvWindow += this.recvUnacked;
      this.recvUnacked = 0;
    }
  }

  /** @internal a stream error: RST_STREAM and the stream (if we have it) closes. */
  streamError(streamId: number, code: number, why: string): void {
    const s = this.streams.get(streamId);
    if (s !== undefined) {
      s.close(code);
      s.fail(new H2StreamError(code, `HTTP/2 stream error ${errorName(code)}: ${why}`));
    } else {
      this.writeControl(rstStreamFrame(streamId, code));
    }
  }

  /** @internal a stream the peer opened (server). */
  openPeerStream(id: number): H2Stream {
    const s = new H2Stream(id, this, this.peer.initialWindowSize, this.opts.settings.initialWindowSize);
    this.streams.set(id, s);
    return s;
  }

  /** @internal a request arrived (server). */
  newPeerStream(s: H2Stream, headers: readonly HeaderField[]): void {
    this.emit("stream", s, headers);
  }

  /** @internal whether `id` is a stream we could have opened (and may since have closed). */
  isOwnStreamId(id: number): boolean {
    return (id % 2 === 1) === (this.opts.role === "client") && id < this.nextStreamId;
  }

  /** @internal */
  onPeerSettings(): void {
    this.encoder.setMaxTableSize(Math.min(this.peer.headerTableSize, 4096));
    this.write(settingsAck());
    const first = !this.remoteSettingsSeen;
    this.remoteSettingsSeen = true;
    // A larger window may unblock queued DATA.
    for (const s of [...this.blocked]) this.flushStream(s);
    if (first) this.emit("remoteSettings", this.peer);
  }

  /** @internal */
  onPing(payload: Buffer, ack: boolean): void {
    if (!ack) {
      this.writeControl(pingFrame(payload, true));
      return;
    }
    const key = payload.toString("latin1");
    const cb = this.pings.get(key);
    if (cb !== undefined) {
      this.pings.delete(key);
      cb();
    }
  }

  /** @internal */
  onGoaway(lastStreamId: number, code: number): void {
    this.goawayReceived = { code, lastStreamId };
    // Our streams above the peer's last-stream-id were never processed: safe to retry elsewhere.
    for (const [id, s] of [...this.streams]) {
      if (this.isOwnStreamId(id) && id > lastStreamId) s.receiveReset(ErrorCode.REFUSED_STREAM, "connection", "GOAWAY");
    }
    if (this.state.t === "open") this.state = { t: "draining", code };
    this.emit("goaway", code, lastStreamId);
    if (this.streams.size === 0) this.closeNow(code === ErrorCode.NO_ERROR ? undefined : new H2ConnectionError(code, `peer sent GOAWAY ${errorName(code)}`, "remote"), true);
  }

  /** @internal the send window of the connection or a stream grew. */
  onWindowUpdate(): void {
    if (this.socketBlocked) return;
    for (const s of [...this.blocked]) {
      this.flushStream(s);
      if (this.socketBlocked || this.sendWindow <= 0) break;
    }
  }

  /** @internal a connection error: GOAWAY with its code, then close. */
  fail(err: H2ProtocolError): void {
    if (err.streamId !== 0) {
      this.streamError(err.streamId, err.code, err.message);
      return;
    }
    if (this.state.t === "closed") return;
    this.sendGoaway(err.code, err.message);
    this.closeNow(new H2ConnectionError(err.code, `HTTP/2 protocol error ${errorName(err.code)}: ${err.message}`, "local"), true);
  }

  get maxHeaderBlock(): number {
    return this.opts.maxHeaderBlock ?? 64 * 1024;
  }

  private sendGoaway(code: number, debug: string): void {
    if (this.goawaySent || this.state.t === "closed") return;
    this.goawaySent = true;
    this.write(goawayFrame(this.lastPeerStreamId, code, debug));
  }

  private closeNow(err: Error | undefined, endSocket: boolean): void {
    if (this.state.t === "closed") return;
    this.state = { t: "closed", err };
    this.reader.stop();
    const code = err instanceof H2ConnectionError ? err.code : ErrorCode.CANCEL;
    const why = err?.message;
    for (const s of [...this.streams.values()]) s.receiveReset(code === ErrorCode.NO_ERROR ? ErrorCode.CANCEL : code, "connection", why);
    this.streams.clear();
    this.blocked.clear();
    this.pings.clear();
    const sock = this.socket;
    if (endSocket && !sock.destroyed) {
      this.out.flush();
      // Flush GOAWAY, then close; a peer that never closes its side does not keep the socket.
      sock.end();
      setTimeout(() => sock.destroy(), 1000).unref();
    } else if (!sock.destroyed) {
      sock.destroy();
    }
    this.emit("close", err);
  }

  private onSocketDrain(): void {
    if (!this.socketBlocked) return;
    this.socketBlocked = false;
    this.onWindowUpdate();
  }

  /** A frame the peer made us send (ack, reset): bounded while the socket is backed up. */
  private writeControl(frame: Buffer): void {
    if (this.socket.writableLength > MAX_QUEUED_CONTROL + SOCKET_HIGH_WATER) {
      this.fail(new H2ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, "peer makes us queue control frames it does not read"));
      return;
    }
    this.write(frame);
  }

  private readonly write = (buf: Buffer): void => this.out.write(buf);

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.reader.push(chunk);
    } catch (err) {
      if (err instanceof H2ProtocolError) this.fail(err);
      else this.fail(new H2ProtocolError(ErrorCode.INTERNAL_ERROR, `internal error handling a frame: ${(err as Error).message}`));
    }
  };
}

/** 'drain' once a stream whose write() returned false is below its high-water mark again. */
function maybeDrain(s: H2Stream): void {
  if (s.needDrain && s.outBytes < STREAM_HIGH_WATER) {
    s.needDrain = false;
    queueMicrotask(() => s.emit("drain"));
  }
}
