import type { ConnectOptions } from "../../sockets/socket-factory.js";
import type { H2ConnectionOptions } from "./h2/connection-types.js";

// HTTP/2 tuning shared by the HBONE client and server (DESIGN §8), given to the lean HTTP/2
// layer in proxy/h2/.

export const STREAM_WINDOW = 4 * 1024 * 1024;
export const CONNECTION_WINDOW = 16 * 1024 * 1024;
export const MAX_FRAME_SIZE = 1024 * 1024;
/** HBONE requests carry a handful of short headers; anything larger is abuse. */
export const DEFAULT_MAX_HEADER_LIST_SIZE = 16 * 1024;
/** `forwarded` names the client's ip:port: a new value on every CONNECT. */
const HPACK = { unindexed: new Set(["forwarded"]) } as const;

/** The H2Connection options of either HBONE side; only the server caps concurrent streams. */
export function hboneH2Options(role: "client" | "server", maxHeaderListSize: number, maxConcurrentStreams?: number): H2ConnectionOptions {
  const settings = { initialWindowSize: STREAM_WINDOW, maxFrameSize: MAX_FRAME_SIZE, maxHeaderListSize };
  return {
    role,
    settings: maxConcurrentStreams === undefined ? settings : { ...settings, maxConcurrentStreams },
    connectionWindow: CONNECTION_WINDOW,
    hpack: HPACK,
  };
}

/**
 * TCP keepalive for every proxy socket (HBONE transport, app upstream, passthrough): finds
 * dead peers on idle long-lived connections. ztunnel's defaults: 180 s idle, 180 s interval,
 * 9 probes.
 */
export const PROXY_KEEPALIVE: NonNullable<ConnectOptions["keepAlive"]> = { idleSec: 180, intervalSec: 180, count: 9 };
