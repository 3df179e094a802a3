import type { Settings } from "node:http2";
import type { ConnectOptions } from "../../sockets/socket-factory.js";

// HTTP/2 tuning shared by the HBONE client and server (DESIGN §8, §12).

export const STREAM_WINDOW = 4 * 1024 * 1024;
export const CONNECTION_WINDOW = 16 * 1024 * 1024;
export const MAX_FRAME_SIZE = 1024 * 1024;
/** HBONE requests carry a handful of short headers; anything larger is abuse. */
export const DEFAULT_MAX_HEADER_LIST_SIZE = 16 * 1024;
/**
 * Node's default session memory cap (10 MB) is below one connection window, so under bulk load
 * it refuses new streams. This is a cap on queued data, not an allocation.
 */
export const MAX_SESSION_MEMORY_MB = 64;

export function hboneSettings(maxHeaderListSize: number, maxConcurrentStreams?: number): Settings {
  return {
    enablePush: false,
    initialWindowSize: STREAM_WINDOW,
    maxFrameSize: MAX_FRAME_SIZE,
    maxHeaderListSize,
    ...(maxConcurrentStreams !== undefined ? { maxConcurrentStreams } : {}),
  };
}

/**
 * TCP keepalive for every proxy socket (HBONE transport, app upstream, passthrough): finds
 * dead peers on idle long-lived connections. ztunnel's defaults: 180 s idle, 180 s interval,
 * 9 probes.
 */
export const PROXY_KEEPALIVE: NonNullable<ConnectOptions["keepAlive"]> = { idleSec: 180, intervalSec: 180, count: 9 };
