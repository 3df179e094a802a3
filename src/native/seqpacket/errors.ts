import { constants } from "node:os";
import { errnoText, makeNativeError, NativeError } from "../errors.js";

const { EAGAIN, EBADF, EMSGSIZE } = constants.errno;

/** libuv stopped polling (status is a negative errno). */
export function pollError(what: string, status: number): NativeError {
  return makeNativeError(what, -status, "poll", errnoText(-status));
}

export function socketClosedError(what: string): NativeError {
  return new NativeError("ERR_SOCKET_CLOSED", `${what}: the seqpacket socket is closed`, EBADF, "sendmsg");
}

/** connect() kept finding the listener's accept backlog full until the deadline. */
export function backlogFullError(shown: string, timeoutMs: number): NativeError {
  return makeNativeError(
    `connect to unix seqpacket socket ${shown} (backlog full for ${timeoutMs} ms)`,
    EAGAIN,
    "connect",
    "Resource temporarily unavailable",
  );
}

/** A datagram that cannot be delivered intact (it was dropped, its fds closed). */
export function datagramError(code: "ERR_DATAGRAM_TRUNCATED" | "ERR_TOO_MANY_FDS", what: string): NativeError {
  return new NativeError(code, `recvmsg: ${what}; the datagram was dropped`, EMSGSIZE, "recvmsg");
}
