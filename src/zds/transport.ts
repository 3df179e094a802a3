// The seam between ZDS logic and the kernel: the protocol code only sees these interfaces, so
// it is unit-tested with an in-memory transport and the SEQPACKET adapter is tested for real.

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** Callbacks a DatagramConn delivers to; set once by the protocol code. */
export interface DatagramHandlers {
  /** One datagram; when `fd` is set the receiver owns it and must close it. */
  message(data: Buffer, fd: number | undefined): void;
  /** A datagram was lost (truncated, too many fds); its fds are already closed. */
  datagramError(err: Error): void;
  /** The connection is gone (EOF, error or local close); called once. */
  closed(err: Error | undefined): void;
}

/** One connected SOCK_SEQPACKET (or an in-memory stand-in). */
export interface DatagramConn {
  /** Starts delivery; messages received before this are buffered by the implementation. */
  attach(handlers: DatagramHandlers): void;
  /** Sends one datagram; `fd` is duplicated by the kernel, the caller keeps its own. */
  send(data: Uint8Array, fd?: number): Promise<void>;
  peerCredentials(): PeerCredentials;
  readonly closed: boolean;
  close(): void;
}

export interface DatagramListener {
  onConnection(cb: (conn: DatagramConn) => void): void;
  close(): void;
}

/** A netns reference the ZDS code can pass on and compare: the native NetnsHandle fits. */
export interface NetnsRef {
  readonly fd: number;
  readonly closed: boolean;
  identity(): { dev: bigint; ino: bigint };
  close(): void;
}

/** The netns/fd primitives ZDS needs; the native layer supplies the real ones. */
export interface NetnsOps<H extends NetnsRef = NetnsRef> {
  /** Opens a netns by path (/proc/<pid>/ns/net, /var/run/netns/x). */
  open(path: string): H;
  /** Takes ownership of a received fd; throws WITHOUT closing it when it is not a netns. */
  adopt(fd: number): H;
  closeFd(fd: number): void;
}
