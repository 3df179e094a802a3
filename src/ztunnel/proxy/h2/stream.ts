import { EventEmitter } from "node:events";
import { ErrorCode, errorName } from "./frames.js";
import type { HeaderField } from "./hpack-table.js";

// One HTTP/2 stream of an H2Connection: not a stream.Duplex, just its state, two bounded queues
// and the events the relay needs ('data', 'end', 'drain', 'finish', 'close', 'error', and
// 'response' on the client). Received DATA is handed on as views into the connection's read
// buffers; while paused it is held here, bounded by the stream window we advertise. Our
// END_STREAM is a half-close: the peer may keep sending until it sends its own.

/** RFC 9113 §5.1 stream states we can be in (idle/reserved streams never get an object). */
export type StreamState =
  | { readonly t: "open" }
  | { readonly t: "half-closed-local" }
  | { readonly t: "half-closed-remote" }
  | { readonly t: "closed"; readonly code: number; readonly by: "end" | "local-reset" | "remote-reset" | "connection" };

// The states without data, shared by every stream.
const OPEN: StreamState = Object.freeze({ t: "open" });
const HALF_CLOSED_LOCAL: StreamState = Object.freeze({ t: "half-closed-local" });
const HALF_CLOSED_REMOTE: StreamState = Object.freeze({ t: "half-closed-remote" });

export class H2StreamError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** What a stream needs from its connection. */
export interface StreamHost {
  /** Frame and send what the stream queued, as the windows allow. */
  flushStream(s: H2Stream): void;
  sendHeaders(s: H2Stream, headers: readonly HeaderField[], endStream: boolean): void;
  sendReset(s: H2Stream, code: number): void;
  /** `n` received bytes were consumed: return them to the peer's windows when due. */
  consumed(s: H2Stream, n: number): void;
  /** The stream reached "closed" (forget it). */
  streamClosed(s: H2Stream): void;
}

export interface H2StreamEvents {
  data: [chunk: Buffer];
  end: [];
  drain: [];
  finish: [];
  /** As net.Socket's: whether the stream ended in an error (a reset with a code, or its connection failing). */
  close: [hadError: boolean];
  error: [err: H2StreamError];
  response: [headers: readonly HeaderField[]];
  newListener: [event: string | symbol, listener: unknown];
}

/** Queued outbound bytes past which write() asks the caller to wait for 'drain'. */
export const STREAM_HIGH_WATER = 128 * 1024;

export class H2Stream extends EventEmitter<H2StreamEvents> {
  state: StreamState = OPEN;
  /** What the peer lets us send on this stream. */
  sendWindow: number;
  /** What we still let the peer send before it must wait for a WINDOW_UPDATE. */
  recvWindow: number;
  /** Received and consumed but not yet returned through WINDOW_UPDATE. */
  recvUnacked = 0;
  /** The peer's HEADERS arrived (response on the client, request on the server). */
  headersSeen = false;
  /** Outbound bytes not yet framed; `out` holds views of what write() got. */
  readonly out: Buffer[] = [];
  outBytes = 0;
  /** end() was called: END_STREAM goes out after the queued bytes. */
  endQueued = false;
  /** write() returned false: 'drain' is owed once the queue is short again. */
  needDrain = false;
  private readonly held: Buffer[] = [];
  private heldBytes = 0;
  private heldEnd = false;
  private closeAfterEnd = false;
  /** Like a Readable: nothing is emitted until the consumer resumes or listens for 'data'. */
  private paused = true;
  private pausedByCaller = false;
  /** Why the stream failed, once it did. */
  errored: H2StreamError | null = null;

  constructor(
    readonly id: number,
    private readonly host: StreamHost,
    sendWindow: number,
    recvWindow: number,
  ) {
    super();
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
    this.on("newListener", startFlowOnData);
  }

  /** RST_STREAM code when the stream was reset (either side), else undefined. */
  get rstCode(): number | undefined {
    const s = this.state;
    return s.t === "closed" && s.by !== "end" ? s.code : undefined;
  }

  get closed(): boolean {
    return this.state.t === "closed";
  }

  get destroyed(): boolean {
    return this.state.t === "closed";
  }

  get writableEnded(): boolean {
    return this.endQueued;
  }

  get writableLength(): number {
    return this.outBytes;
  }

  get readableLength(): number {
    return this.heldBytes;
  }

  get localEnded(): boolean {
    const t = this.state.t;
    return t === "half-closed-local" || t === "closed";
  }

  get remoteEnded(): boolean {
    const t = this.state.t;
    return t === "half-closed-remote" || t === "closed";
  }

  /** Queues bytes (no copy: the buffer must not be reused). False: wait for 'drain'. */
  write(data: Buffer | string): boolean {
    if (this.endQueued || this.closed) return false;
    const chunk = typeof data === "string" ? Buffer.from(data) : data;
    if (chunk.length > 0) {
      this.out.push(chunk);
      this.outBytes += chunk.length;
      this.host.flushStream(this);
    }
    const ok = this.outBytes < STREAM_HIGH_WATER;
    if (!ok) this.needDrain = true;
    return ok;
  }

  /** Half-close: END_STREAM after whatever is queued. */
  end(chunk?: Buffer | string): void {
    if (chunk !== undefined) this.write(chunk);
    if (this.endQueued || this.closed) return;
    this.endQueued = true;
    this.host.flushStream(this);
  }

  /** Server side: the response HEADERS. */
  respond(headers: readonly HeaderField[], endStream = false): void {
    if (this.closed || this.localEnded) return;
    this.host.sendHeaders(this, headers, endStream);
    if (endStream) {
      this.endQueued = true;
      this.localEndSent();
    }
  }

  /** RST_STREAM with `code` (NO_ERROR by default, as node:http2) and close now. */
  close(code: number = ErrorCode.NO_ERROR): void {
    if (this.closed) {
      // Ended cleanly, but the consumer gives up on what it had not read yet: drop it, and
      // the 'close' that waited for it to be read comes now, without an 'end'.
      this.dropHeld();
      if (this.closeAfterEnd) {
        this.closeAfterEnd = false;
        this.heldEnd = false;
        queueMicrotask(this.emitClose);
      }
      return;
    }
    this.host.sendReset(this, code);
    this.toClosed(code, "local-reset");
  }

  /** Abandon the stream: RST_STREAM(CANCEL). */
  destroy(): void {
    this.close(ErrorCode.CANCEL);
  }

  pause(): void {
    this.paused = true;
    this.pausedByCaller = true;
  }

  resume(): void {
    this.pausedByCaller = false;
    if (!this.paused) return;
    this.paused = false;
    // Deliver what arrived while paused, unless the consumer pauses again meanwhile.
    while (!this.paused && this.held.length > 0) {
      const c = this.held.shift() as Buffer;
      this.heldBytes -= c.length;
      this.deliver(c);
    }
    if (!this.paused && this.heldEnd) {
      this.heldEnd = false;
      this.emit("end");
      if (this.closeAfterEnd) {
        this.closeAfterEnd = false;
        queueMicrotask(this.emitClose);
      }
    }
  }

  // ---- called by the connection ----

  /** @internal */
  receiveData(chunk: Buffer): void {
    if (this.paused || this.held.length > 0) {
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      return;
    }
    this.deliver(chunk);
  }

  /** @internal the peer's END_STREAM. */
  receiveEnd(): void {
    const deferred = this.paused || this.held.length > 0;
    if (deferred) this.heldEnd = true;
    const t = this.state.t;
    if (t === "open") this.state = HALF_CLOSED_REMOTE;
    else if (t === "half-closed-local") this.toClosed(ErrorCode.NO_ERROR, "end");
    if (!deferred) this.emit("end");
  }

  /** @internal our END_STREAM went out. */
  localEndSent(): void {
    const t = this.state.t;
    if (t === "open") this.state = HALF_CLOSED_LOCAL;
    else if (t === "half-closed-remote") this.toClosed(ErrorCode.NO_ERROR, "end");
    this.emit("finish");
  }

  /** @internal reset by the peer, or the connection went away. */
  receiveReset(code: number, by: "remote-reset" | "connection", why?: string): void {
    if (this.closed) return;
    this.toClosed(code, by);
    if (code !== ErrorCode.NO_ERROR || by === "connection") {
      const what = by === "connection" ? `connection closed${why !== undefined ? ` (${why})` : ""}` : "stream reset by peer";
      this.fail(new H2StreamError(code, `HTTP/2 ${what}: ${errorName(code)}`));
    }
  }

  /** @internal the bytes the peer may still send were read into our buffers. */
  get heldEnded(): boolean {
    return this.heldEnd;
  }

  /** @internal 'error' for whoever listens; a stream nobody took yet just closes. */
  fail(err: H2StreamError): void {
    this.errored ??= err;
    if (this.listenerCount("error") > 0) this.emit("error", err);
  }

  /**
   * Discards DATA received but never delivered. The peer spent connection window on it: it is
   * returned as consumed, or every reset stream holding unread bytes would shrink the
   * connection window for good until the pooled connection carries nothing.
   */
  private dropHeld(): void {
    const n = this.heldBytes;
    this.held.length = 0;
    this.heldBytes = 0;
    if (n > 0) this.host.consumed(this, n);
  }

  private deliver(chunk: Buffer): void {
    this.host.consumed(this, chunk.length);
    this.emit("data", chunk);
  }

  private toClosed(code: number, by: "end" | "local-reset" | "remote-reset" | "connection"): void {
    if (this.state.t === "closed") return;
    this.state = { t: "closed", code, by };
    this.out.length = 0;
    this.outBytes = 0;
    if (by !== "end") this.dropHeld();
    this.host.streamClosed(this);
    // 'close' is always the last event: after the current frame's handlers and, for a clean
    // end, after the data still held for a paused consumer and its 'end'.
    if (by === "end" && (this.held.length > 0 || this.heldEnd)) this.closeAfterEnd = true;
    else queueMicrotask(this.emitClose);
  }

  private readonly emitClose = (): void => {
    this.emit("close", this.errored !== null);
  };

  /** @internal a 'data' listener was added (startFlowOnData). */
  dataListenerAdded(): void {
    if (!this.pausedByCaller) queueMicrotask(() => this.resume());
  }
}

/** As with a Readable, a 'data' listener starts the flow (after it is attached). One function for every stream, called with the stream as `this`. */
function startFlowOnData(this: H2Stream, event: string | symbol): void {
  if (event === "data") this.dataListenerAdded();
}
