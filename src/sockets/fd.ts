import { isIP, Server, Socket, type ServerOpts, type SocketConstructorOpts } from "node:net";
import { closeFd, isListening } from "../native/index.js";

function closeQuietly(fd: number): void {
  try {
    closeFd(fd);
  } catch {
    // Nothing left to release.
  }
}

export interface FdServerOptions extends ServerOpts {
  /** Node calls listen() again on the fd with this backlog (Node's default: 511). */
  backlog?: number;
}

/**
 * Wraps a listening TCP socket fd (made by createSocket with `listen`) in a net.Server.
 * The server owns the fd once this resolves; on rejection the fd has been closed.
 */
export async function serverFromFd(fd: number, opts: FdServerOptions = {}): Promise<Server> {
  // Node closes the fd when its own listen() fails but not when it refuses the fd earlier; an
  // fd that already listens makes the first case impossible, so ownership on error is clear.
  let listening: boolean;
  try {
    listening = isListening(fd);
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
  if (!listening) {
    closeQuietly(fd);
    throw new TypeError(`fd ${fd} is not a listening socket: create it with spec.listen`);
  }
  const { backlog, ...serverOpts } = opts;
  const server = new Server(serverOpts);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      // Node refused the fd before adopting it (not a TCP socket, or already watched).
      server.off("listening", onListening);
      closeQuietly(fd);
      reject(err);
    };
    const onListening = (): void => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    // For an fd Node reads the backlog only from the second argument, not from the options.
    if (backlog === undefined) server.listen({ fd });
    else server.listen({ fd }, backlog);
  });
  return server;
}

export interface FdConnectOptions {
  allowHalfOpen?: boolean;
}

/**
 * Connects an unconnected TCP socket fd (e.g. made inside a pod netns) to host:port and returns
 * the net.Socket that owns it; it emits 'connect' or 'error' like net.connect().
 *
 * Two Node traps decide the shape of this function (DESIGN §12):
 * - A Socket built on an fd starts reading at once; on an unconnected socket that read fails
 *   with ENOTCONN and destroys the Socket. So reading is held back (`manualStart`) and
 *   connect() is called in the same tick; Node starts reading itself after 'connect'.
 * - connect() on a Socket that was destroyed (after any error) silently opens a NEW socket in
 *   the thread's current netns — the host's — without the mark. So a Socket from here must
 *   never be reconnected: on error, destroy it and ask the factory for a fresh one.
 * `host` must be an IP literal: a name would be resolved by the host's resolver, not the pod's.
 */
export function socketConnectFromFd(fd: number, host: string, port: number, opts: FdConnectOptions = {}): Socket {
  if (isIP(host) === 0) {
    closeQuietly(fd);
    throw new TypeError(`connect from a pod socket needs an IP address, got "${host}"`);
  }
  // `manualStart` is a real net.Socket option that @types/node does not declare.
  const ctorOpts: SocketConstructorOpts & { manualStart: boolean } = {
    fd,
    manualStart: true,
    readable: true,
    writable: true,
    allowHalfOpen: opts.allowHalfOpen ?? true,
  };
  const socket = new Socket(ctorOpts);
  socket.connect({ host, port });
  return socket;
}
