import protobuf from "protobufjs";
import { HelloType, RequestType, ResponseType, VERSION_V1 } from "./proto.js";
import { ZdsMessageTooLargeError, ZdsProtocolError } from "./errors.js";

/** Every ZDS message travels as one datagram of at most this many bytes (Istio's limit). */
export const MAX_DATAGRAM = 1024;

export interface WorkloadInfo {
  name: string;
  namespace: string;
  serviceAccount: string;
}

/** A request the agent sends; `info` is undefined only when a decoded Add lacked workload_info. */
export type ZdsRequest =
  | { type: "add"; uid: string; info: WorkloadInfo | undefined }
  | { type: "keep"; uid: string }
  | { type: "del"; uid: string }
  | { type: "snapshotSent" };

export interface ZdsAck {
  /** Empty string = success. */
  error: string;
}

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const MAX_NESTING = 4;
const utf8 = new TextDecoder("utf-8", { fatal: true });

function checkSize(what: string, bytes: Uint8Array): Uint8Array {
  if (bytes.length > MAX_DATAGRAM) throw new ZdsMessageTooLargeError(what, bytes.length, MAX_DATAGRAM);
  return bytes;
}

function guardIncoming(buf: Uint8Array): void {
  if (buf.length > MAX_DATAGRAM) {
    throw new ZdsProtocolError(`datagram of ${buf.length} bytes exceeds the ${MAX_DATAGRAM}-byte limit`);
  }
}

// protobufjs decodes leniently (it ignores wire types and accepts bad UTF-8); Istio's Rust and
// Go decoders do not. This walk rejects what they reject, before protobufjs builds objects.
function validate(reader: protobuf.Reader, type: protobuf.Type, end: number, depth: number, topLevelOneof: boolean): void {
  if (depth > MAX_NESTING) throw new ZdsProtocolError("message nested too deeply");
  let payloads = 0;
  while (reader.pos < end) {
    const tag = reader.uint32();
    const id = tag >>> 3;
    const wire = tag & 7;
    if (id === 0) throw new ZdsProtocolError("field number 0 is invalid");
    const field = type.fieldsById[id];
    if (field === undefined) {
      // Unknown fields are skipped, as protobuf requires for forward compatibility.
      reader.skipType(wire);
      if (reader.pos > end) throw new ZdsProtocolError("unknown field runs past the end of its message");
      continue;
    }
    if (topLevelOneof) payloads++;
    const resolved = field.resolvedType;
    if (resolved instanceof protobuf.Type) {
      if (wire !== WIRE_LEN) throw new ZdsProtocolError(`field ${type.name}.${field.name} has wire type ${wire}, expected ${WIRE_LEN}`);
      const len = reader.uint32();
      const subEnd = reader.pos + len;
      if (subEnd > end) throw new ZdsProtocolError(`field ${type.name}.${field.name} is truncated`);
      validate(reader, resolved, subEnd, depth + 1, false);
    } else if (field.type === "string") {
      if (wire !== WIRE_LEN) throw new ZdsProtocolError(`field ${type.name}.${field.name} has wire type ${wire}, expected ${WIRE_LEN}`);
      const len = reader.uint32();
      if (reader.pos + len > end) throw new ZdsProtocolError(`field ${type.name}.${field.name} is truncated`);
      try {
        utf8.decode(reader.buf.subarray(reader.pos, reader.pos + len));
      } catch {
        throw new ZdsProtocolError(`field ${type.name}.${field.name} is not valid UTF-8`);
      }
      reader.pos += len;
    } else {
      // The only scalar in the schema is the Version enum (varint).
      if (wire !== WIRE_VARINT) throw new ZdsProtocolError(`field ${type.name}.${field.name} has wire type ${wire}, expected ${WIRE_VARINT}`);
      reader.uint32();
    }
    if (reader.pos > end) throw new ZdsProtocolError(`field ${type.name}.${field.name} runs past the end of its message`);
  }
  if (topLevelOneof && payloads !== 1) {
    throw new ZdsProtocolError(payloads === 0 ? `${type.name} carries no payload` : `${type.name} carries ${payloads} payload fields, exactly one expected`);
  }
}

function strictDecode(type: protobuf.Type, buf: Uint8Array, oneof: boolean): protobuf.Message {
  guardIncoming(buf);
  try {
    const reader = protobuf.Reader.create(buf);
    validate(reader, type, buf.length, 0, oneof);
    return type.decode(buf);
  } catch (err) {
    if (err instanceof ZdsProtocolError) throw err;
    throw new ZdsProtocolError(`cannot decode ${type.name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

interface RawInfo { name?: string; namespace?: string; service_account?: string }
interface RawRequest {
  add?: { uid?: string; workload_info?: RawInfo };
  del?: { uid?: string };
  keep?: { uid?: string };
  snapshot_sent?: object;
}

export function encodeHello(version: number = VERSION_V1): Uint8Array {
  return checkSize("ZdsHello", HelloType.encode(HelloType.fromObject({ version })).finish());
}

export function decodeHello(buf: Uint8Array): { version: number } {
  const msg = strictDecode(HelloType, buf, false) as unknown as { version?: number };
  return { version: msg.version ?? 0 };
}

export function encodeRequest(req: ZdsRequest): Uint8Array {
  let obj: RawRequest;
  switch (req.type) {
    case "add":
      obj = { add: { uid: req.uid } };
      if (req.info !== undefined) {
        obj.add!.workload_info = { name: req.info.name, namespace: req.info.namespace, service_account: req.info.serviceAccount };
      }
      break;
    case "del":
      obj = { del: { uid: req.uid } };
      break;
    case "keep":
      obj = { keep: { uid: req.uid } };
      break;
    case "snapshotSent":
      obj = { snapshot_sent: {} };
      break;
  }
  return checkSize(`${req.type} request`, RequestType.encode(RequestType.fromObject(obj)).finish());
}

export function decodeRequest(buf: Uint8Array): ZdsRequest {
  const msg = strictDecode(RequestType, buf, true) as unknown as RawRequest;
  if (msg.add) {
    const wi = msg.add.workload_info;
    const info = wi === undefined || wi === null ? undefined : { name: wi.name ?? "", namespace: wi.namespace ?? "", serviceAccount: wi.service_account ?? "" };
    return { type: "add", uid: msg.add.uid ?? "", info };
  }
  if (msg.del) return { type: "del", uid: msg.del.uid ?? "" };
  if (msg.keep) return { type: "keep", uid: msg.keep.uid ?? "" };
  return { type: "snapshotSent" };
}

const TRUNCATION_MARK = "...(truncated)";
// Outer tag + 2-byte length + inner tag + 2-byte length: the most an Ack's framing can cost.
const ACK_OVERHEAD = 6;

/** Cuts `text` to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  let cut = maxBytes;
  // Back off over continuation bytes (10xxxxxx) so the cut lands on a character start.
  while (cut > 0 && (bytes[cut]! & 0xc0) === 0x80) cut--;
  return bytes.subarray(0, cut).toString("utf8");
}

/** Encodes an Ack; an error text that would overflow the datagram is truncated. */
export function encodeAck(error = ""): Uint8Array {
  const room = MAX_DATAGRAM - ACK_OVERHEAD;
  const text = Buffer.byteLength(error, "utf8") <= room ? error : truncateUtf8(error, room - TRUNCATION_MARK.length) + TRUNCATION_MARK;
  const ack = text === "" ? {} : { error: text };
  return checkSize("Ack", ResponseType.encode(ResponseType.fromObject({ ack })).finish());
}

export function decodeResponse(buf: Uint8Array): ZdsAck {
  const msg = strictDecode(ResponseType, buf, true) as unknown as { ack?: { error?: string } };
  return { error: msg.ack?.error ?? "" };
}
