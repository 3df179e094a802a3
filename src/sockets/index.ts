export type { SocketFactory, ListenOptions, ConnectOptions } from "./socket-factory.js";
export { serverFromFd, socketConnectFromFd, type FdConnectOptions, type FdServerOptions } from "./fd.js";
export { NativeSocketFactory, type NativeFactoryConfig } from "./native-factory.js";
export { PlainSocketFactory } from "./plain.js";
export { InPodSocketFactory, type InPodSocketFactoryOptions } from "./in-pod.js";
export { udpSocket, type UdpSocketOptions } from "./dgram.js";
