import { AmbientError } from "../src/shared/errors.js";

// Incremental reader of one HTTP/1.1 response (status line, headers, body framed by
// Content-Length, chunked encoding or the connection's end). The plugin speaks HTTP over a raw
// unix socket instead of node:http: loading and first use of the http client cost ~10 ms of
// every CNI ADD, and the agent's replies are one short message.

/** Bytes of status line + headers we accept; the agent's are ~150. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Body bytes kept; the rest is read and dropped (the reply is a short reason). */
export const MAX_KEPT_BODY_BYTES = 64 * 1024;

/** The agent's socket answered with something that is not a well-formed HTTP/1.1 reply. */
export class HttpReplyError extends AmbientError {
  constructor(message: string) {
    super("CNI_HTTP_REPLY", message);
  }
}

export interface HttpReply {
  status: number;
  body: string;
}

type Framing = { t: "length"; left: number } | { t: "chunked" } | { t: "close" };
type ChunkState = { t: "size" } | { t: "data"; left: number } | { t: "data-end" } | { t: "trailers" };

const CRLF = Buffer.from("\r\n");
const HEAD_END = Buffer.from("\r\n\r\n");

export class HttpReplyReader {
  private pending: Buffer = Buffer.alloc(0);
  private status = 0;
  private framing: Framing | undefined;
  private chunk: ChunkState = { t: "size" };
  private readonly kept: Buffer[] = [];
  private keptBytes = 0;
  private done = false;

  /** Feeds bytes from the socket; returns true once the whole response has arrived. */
  push(data: Buffer): boolean {
    if (this.done) return true;
    this.pending = this.pending.length === 0 ? data : Buffer.concat([this.pending, data]);
    while (!this.done) {
      const progressed = this.framing === undefined ? this.readHead() : this.readBody();
      if (!progressed) break;
    }
    return this.done;
  }

  /** The peer closed the connection: completes a close-delimited body, else it is an error. */
  end(): void {
    if (this.done) return;
    if (this.framing?.t === "close") {
      this.done = true;
      return;
    }
    throw new HttpReplyError(this.framing === undefined ? "connection closed before a reply" : "connection closed in the middle of the reply");
  }

  get complete(): boolean {
    return this.done;
  }

  reply(): HttpReply {
    if (!this.done) throw new HttpReplyError("reply is not complete");
    return { status: this.status, body: Buffer.concat(this.kept).toString("utf8") };
  }

  private readHead(): boolean {
    const at = this.pending.indexOf(HEAD_END);
    if (at < 0) {
      if (this.pending.length > MAX_HEAD_BYTES) throw new HttpReplyError(`reply headers exceed ${MAX_HEAD_BYTES} bytes`);
      return false;
    }
    if (at > MAX_HEAD_BYTES) throw new HttpReplyError(`reply headers exceed ${MAX_HEAD_BYTES} bytes`);
    const lines = this.pending.subarray(0, at).toString("latin1").split("\r\n");
    this.pending = this.pending.subarray(at + HEAD_END.length);
    const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? "");
    if (m === null) throw new HttpReplyError(`not an HTTP/1.x status line: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`);
    const status = Number(m[1]);
    let length: number | undefined;
    let chunked = false;
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new HttpReplyError(`malformed reply header: ${JSON.stringify(line.slice(0, 80))}`);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === "content-length") {
        if (!/^\d{1,15}$/.test(value) || (length !== undefined && length !== Number(value))) {
          throw new HttpReplyError(`bad Content-Length: ${JSON.stringify(value)}`);
        }
        length = Number(value);
      } else if (name === "transfer-encoding") {
        chunked = value.toLowerCase().split(",").map((s) => s.trim()).at(-1) === "chunked";
      }
    }
    // Interim replies (100 Continue): the final one follows on the same connection.
    if (status >= 100 && status < 200) return true;
    this.status = status;
    if (status === 204 || status === 304) this.framing = { t: "length", left: 0 };
    else if (chunked) this.framing = { t: "chunked" };
    else if (length !== undefined) this.framing = { t: "length", left: length };
    else this.framing = { t: "close" };
    if (this.framing.t === "length" && this.framing.left === 0) this.done = true;
    return true;
  }

  private keep(data: Buffer): void {
    const room = MAX_KEPT_BODY_BYTES - this.keptBytes;
    if (room <= 0 || data.length === 0) return;
    // Copy: `data` may be a view of a socket chunk that is otherwise dropped.
    const part = Buffer.from(data.subarray(0, room));
    this.kept.push(part);
    this.keptBytes += part.length;
  }

  private readBody(): boolean {
    const f = this.framing;
    if (f === undefined) return false;
    if (f.t === "close") {
      this.keep(this.pending);
      this.pending = Buffer.alloc(0);
      return false;
    }
    if (f.t === "length") {
      const take = Math.min(f.left, this.pending.length);
      this.keep(this.pending.subarray(0, take));
      this.pending = this.pending.subarray(take);
      f.left -= take;
      if (f.left === 0) this.done = true;
      return false;
    }
    return this.readChunked();
  }

  /** One step of the chunked decoder; false when it needs more bytes. */
  private readChunked(): boolean {
    const c = this.chunk;
    if (c.t === "data") {
      if (this.pending.length === 0) return false;
      const take = Math.min(c.left, this.pending.length);
      this.keep(this.pending.subarray(0, take));
      this.pending = this.pending.subarray(take);
      c.left -= take;
      if (c.left === 0) this.chunk = { t: "data-end" };
      return true;
    }
    const eol = this.pending.indexOf(CRLF);
    if (eol < 0) {
      if (this.pending.length > MAX_HEAD_BYTES) throw new HttpReplyError("chunked reply: line too long");
      return false;
    }
    const line = this.pending.subarray(0, eol).toString("latin1");
    this.pending = this.pending.subarray(eol + CRLF.length);
    if (c.t === "data-end") {
      if (line !== "") throw new HttpReplyError("chunked reply: chunk not followed by CRLF");
      this.chunk = { t: "size" };
    } else if (c.t === "size") {
      const size = /^([0-9a-fA-F]{1,12})(?:;.*)?$/.exec(line.trim());
      if (size === null) throw new HttpReplyError(`chunked reply: bad chunk size ${JSON.stringify(line.slice(0, 40))}`);
      const n = parseInt(size[1] ?? "", 16);
      this.chunk = n === 0 ? { t: "trailers" } : { t: "data", left: n };
    } else if (line === "") {
      this.done = true;
    }
    return true;
  }
}
