import type { EncoderOptions } from "./hpack-encoder.js";
import type { HeaderField } from "./hpack-table.js";
import type { PeerSettings, LocalSettings } from "./settings.js";
import type { H2Stream } from "./stream.js";

// The public shapes of an H2Connection: its options, events, states and errors.

export interface H2ConnectionOptions {
  readonly role: "client" | "server";
  readonly settings: LocalSettings;
  /** Our connection-level receive window (the stream window is settings.initialWindowSize). */
  readonly connectionWindow: number;
  /** Largest compressed header block accepted before the connection is closed. */
  readonly maxHeaderBlock?: number;
  /** How our header blocks are encoded (e.g. names whose values never repeat). */
  readonly hpack?: EncoderOptions;
}

export interface H2ConnectionEvents {
  /** The peer's SETTINGS arrived (the first time: the connection is usable). */
  remoteSettings: [settings: Readonly<PeerSettings>];
  /** Server: a new request stream. */
  stream: [stream: H2Stream, headers: readonly HeaderField[]];
  goaway: [code: number, lastStreamId: number];
  /** Once; err is set when the connection failed (a protocol error either side, or the socket). */
  close: [err: Error | undefined];
}

export class H2ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly by: "local" | "remote" | "transport",
  ) {
    super(message);
  }
}

export type ConnState =
  | { readonly t: "open" }
  | { readonly t: "draining"; readonly code: number }
  | { readonly t: "closed"; readonly err: Error | undefined };
