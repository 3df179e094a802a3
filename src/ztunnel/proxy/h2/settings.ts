import { DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW, ErrorCode, H2ProtocolError, MAX_FRAME_SIZE_LIMIT, MAX_WINDOW, SettingId } from "./frames.js";

// SETTINGS (RFC 9113 §6.5): what each side advertises, parsing with the RFC's validity checks,
// and the list we send.

export interface PeerSettings {
  headerTableSize: number;
  enablePush: boolean;
  /** Undefined: the peer set no limit. */
  maxConcurrentStreams: number | undefined;
  initialWindowSize: number;
  maxFrameSize: number;
  maxHeaderListSize: number | undefined;
}

export const DEFAULT_PEER_SETTINGS: Readonly<PeerSettings> = {
  headerTableSize: 4096,
  enablePush: true,
  maxConcurrentStreams: undefined,
  initialWindowSize: DEFAULT_WINDOW,
  maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
  maxHeaderListSize: undefined,
};

export interface LocalSettings {
  readonly initialWindowSize: number;
  readonly maxFrameSize: number;
  readonly maxHeaderListSize: number;
  /** Server only: streams a client may have open at once. */
  readonly maxConcurrentStreams?: number;
}

export function localSettingsList(s: LocalSettings): Array<[number, number]> {
  const list: Array<[number, number]> = [
    [SettingId.ENABLE_PUSH, 0],
    [SettingId.INITIAL_WINDOW_SIZE, s.initialWindowSize],
    [SettingId.MAX_FRAME_SIZE, s.maxFrameSize],
    [SettingId.MAX_HEADER_LIST_SIZE, s.maxHeaderListSize],
  ];
  if (s.maxConcurrentStreams !== undefined) list.push([SettingId.MAX_CONCURRENT_STREAMS, s.maxConcurrentStreams]);
  return list;
}

/** Applies a SETTINGS payload (length already checked to be a multiple of 6) onto `into`. */
export function applySettings(payload: Buffer, into: PeerSettings): void {
  for (let off = 0; off + 6 <= payload.length; off += 6) {
    const id = payload.readUInt16BE(off);
    const value = payload.readUInt32BE(off + 2);
    switch (id) {
      case SettingId.HEADER_TABLE_SIZE:
        into.headerTableSize = value;
        break;
      case SettingId.ENABLE_PUSH:
        if (value > 1) throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH ${value} is not 0 or 1`);
        into.enablePush = value === 1;
        break;
      case SettingId.MAX_CONCURRENT_STREAMS:
        into.maxConcurrentStreams = value;
        break;
      case SettingId.INITIAL_WINDOW_SIZE:
        if (value > MAX_WINDOW) throw new H2ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${value} exceeds 2^31-1`);
        into.initialWindowSize = value;
        break;
      case SettingId.MAX_FRAME_SIZE:
        if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_FRAME_SIZE_LIMIT) {
          throw new H2ProtocolError(ErrorCode.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value} is outside 16384..16777215`);
        }
        into.maxFrameSize = value;
        break;
      case SettingId.MAX_HEADER_LIST_SIZE:
        into.maxHeaderListSize = value;
        break;
      default:
        // Unknown settings are ignored (§6.5.2).
        break;
    }
  }
}
