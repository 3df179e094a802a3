// Public surface of the native layer (N-API addon native/ambient_native.node + thin wrappers).
export { NativeError } from "./errors.js";
export { NetnsHandle, currentThreadNetns, sameNetns, type NetnsIdentity } from "./netns.js";
export {
  createSocket,
  originalDst,
  netnsCookie,
  netnsCookieOf,
  getSocketMark,
  isListening,
  closeFd,
  dupFd,
  type SocketSpec,
  type OriginalDst,
} from "./sockets.js";
export { writeNetSysctl } from "./sysctl.js";
export { setThreadName } from "./thread.js";
export { DEFAULT_PIPE_SIZE, SpliceRelay, type HandOverOptions, type SpliceCounts, type SpliceEvent, type SpliceStartOptions } from "./splice.js";
export { SeqpacketServer } from "./seqpacket/server.js";
export { SeqpacketSocket } from "./seqpacket/socket.js";
export {
  DEFAULT_MAX_DATAGRAM,
  type SeqpacketAddress,
  type SeqpacketListenOptions,
  type SeqpacketConnectOptions,
} from "./seqpacket/options.js";
