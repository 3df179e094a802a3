import { getSystemErrorName } from "node:util";

// A client stream on a unix socket, for one request/reply with the agent. The plugin is a
// process the runtime starts for every pod: node:net (and the stream modules it pulls in) costs
// ~2.5 ms of its ~22 ms of CPU per ADD, the largest share above Node's own start-up. libuv's pipe
// handle does the same work (connect, write, read to EOF, close) without those modules.
// The handle is Node's pipe binding, reached through process.binding (deprecated, but no
// warning unless --pending-deprecation). The executable embeds the node it was built and
// trained with (scripts/build-cni-plugin.mjs runs a full ADD through this path), so that
// binding cannot change under it; should a node lack it, node:net takes over.

export interface UnixStreamEvents {
  data(chunk: Buffer): void;
  /** The peer closed its side (EOF). */
  end(): void;
  /** Connect, read or write failed; the stream is closed. */
  error(err: Error): void;
}

export interface UnixStream {
  /** Writes once connected (queued until then). */
  write(text: string): void;
  /** Closes the stream; no event follows. Idempotent. */
  destroy(): void;
}

export type UnixConnector = (path: string, events: UnixStreamEvents) => UnixStream;

/** The slice of libuv's pipe handle (src/pipe_wrap.cc, src/stream_base.cc) used here. */
interface PipeHandle {
  connect(req: ConnectReq, path: string): number;
  readStart(): number;
  writeUtf8String(req: WriteReq, text: string): number;
  close(): void;
  /** Must always be a function: the binding asserts on anything else (and aborts the process). */
  onread: (buf: ArrayBuffer | undefined) => void;
}
interface ConnectReq {
  oncomplete: (status: number) => void;
}
interface WriteReq {
  handle: PipeHandle;
  oncomplete: (status: number) => void;
}
interface PipeBinding {
  Pipe: new (type: number) => PipeHandle;
  PipeConnectWrap: new () => ConnectReq;
  constants: { SOCKET: number };
}
interface StreamBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
}

const UV_EOF = -4095;

function errnoError(syscall: string, status: number, path: string): Error {
  const code = getSystemErrorName(status);
  return Object.assign(new Error(`${syscall} ${code} ${path}`), { code, errno: status, syscall });
}

function bindings(): { pipe: PipeBinding; stream: StreamBinding } | undefined {
  const binding = (process as unknown as { binding?: (name: string) => unknown }).binding;
  if (typeof binding !== "function") return undefined;
  try {
    const pipe = binding("pipe_wrap") as Partial<PipeBinding>;
    const stream = binding("stream_wrap") as Partial<StreamBinding>;
    const ok =
      typeof pipe.Pipe === "function" &&
      typeof pipe.PipeConnectWrap === "function" &&
      typeof pipe.constants?.SOCKET === "number" &&
      typeof stream.WriteWrap === "function" &&
      stream.streamBaseState instanceof Int32Array &&
      typeof stream.kReadBytesOrError === "number" &&
      typeof stream.kArrayBufferOffset === "number" &&
      typeof stream.kLastWriteWasAsync === "number";
    return ok ? { pipe: pipe as PipeBinding, stream: stream as StreamBinding } : undefined;
  } catch {
    return undefined;
  }
}

function rawConnector(pipe: PipeBinding, stream: StreamBinding): UnixConnector {
  const state = stream.streamBaseState;
  return (path, events) => {
    const handle = new pipe.Pipe(pipe.constants.SOCKET);
    let open = true;
    let connected = false;
    let pending: string | undefined;
    // Requests in flight stay referenced until libuv completes them.
    const inflight = new Set<object>();
    const close = (): void => {
      if (!open) return;
      open = false;
      handle.close();
    };
    const fail = (syscall: string, status: number): void => {
      if (!open) return;
      close();
      events.error(errnoError(syscall, status, path));
    };
    const send = (text: string): void => {
      const req = new stream.WriteWrap();
      req.handle = handle;
      // Called only when the write completes later (the kernel buffer was full).
      req.oncomplete = (status) => {
        inflight.delete(req);
        if (status < 0) fail("write", status);
      };
      inflight.add(req);
      const err = handle.writeUtf8String(req, text);
      if (err < 0 || state[stream.kLastWriteWasAsync] === 0) inflight.delete(req);
      if (err < 0) fail("write", err);
    };
    handle.onread = (buf) => {
      if (!open) return;
      const n = state[stream.kReadBytesOrError]!;
      if (n > 0 && buf !== undefined) {
        // A copy: the reply is a few hundred bytes and the arena is reused for the next read.
        events.data(Buffer.from(new Uint8Array(buf, state[stream.kArrayBufferOffset]!, n)));
      } else if (n === UV_EOF) {
        close();
        events.end();
      } else if (n < 0) {
        fail("read", n);
      }
    };
    const req = new pipe.PipeConnectWrap();
    inflight.add(req);
    req.oncomplete = (status) => {
      inflight.delete(req);
      if (!open) return;
      if (status < 0) {
        fail("connect", status);
        return;
      }
      connected = true;
      const err = handle.readStart();
      if (err < 0) {
        fail("read", err);
        return;
      }
      if (pending !== undefined) send(pending);
      pending = undefined;
    };
    const err = handle.connect(req, path);
    // Reported like an asynchronous failure: the caller has not seen the stream yet.
    if (err < 0) queueMicrotask(() => fail("connect", err));
    return {
      write: (text) => {
        if (!open) return;
        if (connected) send(text);
        else pending = (pending ?? "") + text;
      },
      destroy: close,
    };
  };
}

/** node:net, loaded only when the pipe binding is missing. */
const netConnector: UnixConnector = (path, events) => {
  let destroyed = false;
  let socket: import("node:net").Socket | undefined;
  let pending = "";
  void import("node:net").then(({ connect }) => {
    if (destroyed) return;
    const s = connect(path);
    socket = s;
    s.on("data", (chunk: Buffer) => events.data(chunk));
    s.on("end", () => {
      s.destroy();
      events.end();
    });
    s.on("error", (err) => events.error(err));
    // A close without end or error: the agent went away mid-exchange.
    s.on("close", (hadError) => {
      if (!hadError && s.readableEnded === false) events.error(new Error("connection closed before a reply"));
    });
    if (pending !== "") s.write(pending);
  });
  return {
    write: (text) => {
      if (socket === undefined) pending += text;
      else socket.write(text);
    },
    destroy: () => {
      destroyed = true;
      socket?.destroy();
    },
  };
};

let chosen: { kind: "pipe-binding" | "net"; connect: UnixConnector } | undefined;

function choose(): { kind: "pipe-binding" | "net"; connect: UnixConnector } {
  if (chosen === undefined) {
    const b = bindings();
    chosen = b === undefined ? { kind: "net", connect: netConnector } : { kind: "pipe-binding", connect: rawConnector(b.pipe, b.stream) };
  }
  return chosen;
}

/** The connector of this process: libuv's pipe handle when node has it, else node:net. */
export function unixConnector(): UnixConnector {
  return choose().connect;
}

/** Which one unixConnector() is (tests check that this node takes the fast path). */
export function unixConnectorKind(): "pipe-binding" | "net" {
  return choose().kind;
}

/** For tests: the node:net connector, the fallback of a node without the pipe binding. */
export const netUnixConnector: UnixConnector = netConnector;
