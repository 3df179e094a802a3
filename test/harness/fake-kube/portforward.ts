import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";

// The pods/portforward subresource as the API server speaks it over WebSocket (RFC 6455, the
// channel protocol `v4.channel.k8s.io`): every message starts with a channel byte; for one
// forwarded port channel 0 carries data and channel 1 errors, and the server's first message
// on each channel is the port number (2 bytes, little endian). Client frames are masked.

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const PROTOCOLS = ["v4.channel.k8s.io", "channel.k8s.io"];

export type PortForwardDial = (namespace: string, pod: string, port: number) => Promise<Duplex>;

export class WsReject extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function reject(socket: Duplex, status: number, message: string): void {
  const body = JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", message, code: status });
  socket.end(`HTTP/1.1 ${status} ${status === 404 ? "Not Found" : status === 401 ? "Unauthorized" : "Bad Request"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

function frame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n]) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (n >= 126 && n < 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else if (n >= 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

/** Reads masked client frames; calls back with each whole message (fragments joined). */
class FrameReader {
  private buf = Buffer.alloc(0);
  private parts: Buffer[] = [];
  constructor(private readonly onMessage: (opcode: number, data: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.buf.length < 2) return;
      const b0 = this.buf[0]!;
      const b1 = this.buf[1]!;
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      if (!masked) throw new WsReject(400, "client frames must be masked");
      if (this.buf.length < off + 4 + len) return;
      const mask = this.buf.subarray(off, off + 4);
      const data = Buffer.from(this.buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < data.length; i++) data[i] = data[i]! ^ mask[i % 4]!;
      this.buf = this.buf.subarray(off + 4 + len);
      const opcode = b0 & 0x0f;
      if (opcode >= 8) this.onMessage(opcode, data); // control frames are never fragmented
      else {
        this.parts.push(data);
        if ((b0 & 0x80) !== 0) {
          const first = opcode === 0 ? 2 : opcode;
          this.onMessage(first, Buffer.concat(this.parts));
          this.parts = [];
        }
      }
    }
  }
}

/**
 * Serves one port-forward upgrade: checks the handshake and the pod, dials the pod's port and
 * relays until either side closes. Throws WsReject for a request the API server would refuse.
 */
export async function servePortForward(req: IncomingMessage, socket: Duplex, ns: string, pod: string, podExists: boolean, dial: PortForwardDial | undefined): Promise<void> {
  try {
    const key = req.headers["sec-websocket-key"];
    if (String(req.headers.upgrade ?? "").toLowerCase() !== "websocket" || typeof key !== "string") throw new WsReject(400, "port-forward needs a WebSocket upgrade");
    const offered = String(req.headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim());
    const protocol = PROTOCOLS.find((p) => offered.includes(p));
    if (protocol === undefined) throw new WsReject(400, `none of the offered subprotocols (${offered.join(", ")}) is supported (${PROTOCOLS.join(", ")})`);
    const ports = new URL(req.url ?? "/", "http://x").searchParams.getAll("ports");
    if (ports.length !== 1 || !/^\d{1,5}$/.test(ports[0]!) || Number(ports[0]) < 1 || Number(ports[0]) > 65535) throw new WsReject(400, "exactly one valid port is required (?ports=N)");
    if (!podExists) throw new WsReject(404, `pods "${pod}" not found`);
    if (dial === undefined) throw new WsReject(400, "this fake API server was started without a port-forward dialer");
    const port = Number(ports[0]);
    const accept = createHash("sha1").update(key + GUID).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`);
    const portBytes = Buffer.from([port & 0xff, port >> 8]);
    socket.write(frame(2, Buffer.concat([Buffer.from([0]), portBytes])));
    socket.write(frame(2, Buffer.concat([Buffer.from([1]), portBytes])));
    let target: Duplex;
    try {
      target = await dial(ns, pod, port);
    } catch (err) {
      socket.write(frame(2, Buffer.concat([Buffer.from([1]), Buffer.from(`error forwarding port ${port} to pod ${pod}: ${String(err)}`)])));
      socket.end(frame(8, Buffer.from([0x03, 0xe8])));
      return;
    }
    const close = (): void => {
      if (!socket.destroyed) socket.end(frame(8, Buffer.from([0x03, 0xe8])));
      target.destroy();
    };
    target.on("data", (d: Buffer) => socket.write(frame(2, Buffer.concat([Buffer.from([0]), d]))));
    target.on("end", close);
    target.on("error", close);
    const reader = new FrameReader((opcode, data) => {
      if (opcode === 8) close();
      else if (opcode === 9) socket.write(frame(10, data));
      else if ((opcode === 2 || opcode === 1) && data.length > 1 && data[0] === 0) target.write(data.subarray(1));
    });
    socket.on("data", (c: Buffer) => {
      try {
        reader.push(c);
      } catch {
        close();
      }
    });
    socket.on("close", () => target.destroy());
    socket.on("error", () => target.destroy());
  } catch (err) {
    if (err instanceof WsReject) reject(socket, err.status, err.message);
    else reject(socket, 500, String(err));
  }
}
