import { chmodSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { closeFd, NetnsHandle, SeqpacketServer, SeqpacketSocket } from "../native/index.js";
import { errorMessage } from "../shared/errors.js";
import { MAX_DATAGRAM } from "./codec.js";
import { ZdsConfigError } from "./errors.js";
import type { DatagramConn, DatagramHandlers, DatagramListener, NetnsOps, PeerCredentials } from "./transport.js";

// The kernel side of the ZDS seam: SOCK_SEQPACKET sockets and netns handles of the native layer.

type Pending = { t: "message"; data: Buffer; fd: number | undefined } | { t: "datagramError"; err: Error } | { t: "closed"; err: Error | undefined };

/** Wraps a connected SeqpacketSocket; events before attach() are buffered (fds included). */
export function seqpacketConn(sock: SeqpacketSocket): DatagramConn {
  let handlers: DatagramHandlers | undefined;
  const early: Pending[] = [];
  let lastError: Error | undefined;
  let closedSeen = false;
  sock.on("message", (data: Buffer, fd: number | undefined) => {
    if (handlers) handlers.message(data, fd);
    else early.push({ t: "message", data, fd });
  });
  sock.on("datagramError", (err: Error) => {
    if (handlers) handlers.datagramError(err);
    else early.push({ t: "datagramError", err });
  });
  sock.on("error", (err: Error) => {
    lastError = err;
  });
  sock.on("close", () => {
    if (closedSeen) return;
    closedSeen = true;
    if (handlers) handlers.closed(lastError);
    else early.push({ t: "closed", err: lastError });
  });
  return {
    attach(h: DatagramHandlers): void {
      handlers = h;
      for (const e of early.splice(0)) {
        if (e.t === "message") h.message(e.data, e.fd);
        else if (e.t === "datagramError") h.datagramError(e.err);
        else h.closed(e.err);
      }
    },
    send: (data, fd) => sock.send(data, fd),
    peerCredentials: (): PeerCredentials => sock.peerCredentials(),
    get closed() {
      return sock.closed;
    },
    close: () => sock.close(),
  };
}

export const nativeNetnsOps: NetnsOps<NetnsHandle> = {
  open: (path) => NetnsHandle.open(path),
  adopt: (fd) => NetnsHandle.fromFd(fd),
  closeFd: (fd) => closeFd(fd),
};

/**
 * Listens on the ZDS socket path: the directory is created or tightened to 0700 (WorkloadInfo
 * decides identities, so only root may connect) and a stale socket file is removed.
 */
export function listenSeqpacket(socketPath: string): DatagramListener {
  const dir = dirname(socketPath);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  } catch (err) {
    throw new ZdsConfigError(`cannot prepare the ZDS socket directory ${dir}: ${errorMessage(err)}`, { cause: err });
  }
  removeStaleSocket(socketPath);
  const server = SeqpacketServer.listen(socketPath, { mode: 0o600, maxDatagram: MAX_DATAGRAM });
  let cb: ((c: DatagramConn) => void) | undefined;
  server.on("connection", (sock: SeqpacketSocket) => {
    if (cb) cb(seqpacketConn(sock));
    else sock.close();
  });
  server.on("error", () => {
    // Accept errors (EMFILE) are retried by the native listener; nothing to do per connection.
  });
  return {
    onConnection: (c) => {
      cb = c;
    },
    close: () => server.close(),
  };
}

function removeStaleSocket(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new ZdsConfigError(`${path} exists and is not a socket; refusing to replace it (remove it or choose another ZDS socket path)`);
  unlinkSync(path);
}

/** Connects to the agent's ZDS socket (one attempt; the client retries with backoff). */
export async function connectSeqpacket(socketPath: string): Promise<DatagramConn> {
  return seqpacketConn(await SeqpacketSocket.connect(socketPath, { maxDatagram: MAX_DATAGRAM }));
}
