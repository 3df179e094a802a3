import * as dnsPacket from "dns-packet";
import type { Answer, DecodedPacket, Question } from "dns-packet";

// The wire side of the proxy, on top of dns-packet: what a client sent (a query we can serve, one
// to answer with an error, or something to drop) and the responses we build. Never throws on
// bad input: a packet dns-packet cannot decode becomes FORMERR (when its header is readable).

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = keyof typeof RCODE;

const HEADER_BYTES = 12;
const FLAG_QR = 0x8000;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const FLAG_AA = 0x0400;
/** The classic limit for a UDP answer to a client that sent no EDNS. */
export const UDP_DEFAULT_MAX = 512;
/** Our EDNS payload size (the 2020 DNS flag day value). */
export const EDNS_PAYLOAD = 1232;

export interface Query {
  readonly id: number;
  readonly question: Question;
  readonly recursionDesired: boolean;
  /** The client's EDNS UDP payload size; undefined when it sent no OPT record. */
  readonly ednsPayload: number | undefined;
  /** The packet as the client sent it (forwarded upstream unchanged except for the id). */
  readonly raw: Buffer;
}

export type Parsed =
  | { readonly t: "query"; readonly query: Query }
  /** Answer with this (FORMERR, NOTIMP) right away. */
  | { readonly t: "reply"; readonly reply: Buffer; readonly reason: string }
  /** Not a query we may answer (too short, a response): silently ignored. */
  | { readonly t: "drop"; readonly reason: string };

export function parseQuery(raw: Buffer): Parsed {
  if (raw.length < HEADER_BYTES) return { t: "drop", reason: `${raw.length} bytes is shorter than a DNS header` };
  const id = raw.readUInt16BE(0);
  const flags = raw.readUInt16BE(2);
  // Answering responses would let two resolvers bounce packets at each other forever.
  if ((flags & FLAG_QR) !== 0) return { t: "drop", reason: "a response, not a query" };
  const rd = (flags & FLAG_RD) !== 0;
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) return { t: "reply", reply: headerOnly(id, rd, RCODE.NOTIMP), reason: `opcode ${opcode} is not QUERY` };
  let packet: DecodedPacket;
  try {
    packet = dnsPacket.decode(raw);
  } catch (err) {
    return { t: "reply", reply: headerOnly(id, rd, RCODE.FORMERR), reason: `undecodable: ${(err as Error).message}` };
  }
  const questions = packet.questions ?? [];
  const question = questions[0];
  if (questions.length !== 1 || question === undefined) {
    return { t: "reply", reply: headerOnly(id, rd, RCODE.FORMERR), reason: `${questions.length} questions (exactly one is supported)` };
  }
  const opt = (packet.additionals ?? []).find((a) => a.type === "OPT");
  const ednsPayload = opt !== undefined && "udpPayloadSize" in opt ? opt.udpPayloadSize : undefined;
  return { t: "query", query: { id, question, recursionDesired: rd, ednsPayload, raw } };
}

/** How large a UDP answer this client accepts. */
export function udpLimit(q: Query): number {
  return q.ednsPayload === undefined ? UDP_DEFAULT_MAX : Math.min(Math.max(q.ednsPayload, UDP_DEFAULT_MAX), 65_535);
}

export interface AnswerParts {
  readonly rcode: Rcode;
  readonly answers?: readonly Answer[];
  readonly additionals?: readonly Answer[];
  readonly authoritative?: boolean;
  readonly truncated?: boolean;
}

/** A response to `q` that we build ourselves (mesh answers and errors). */
export function buildResponse(q: Query, parts: AnswerParts): Buffer {
  let flags = RCODE[parts.rcode] | FLAG_RA;
  if (q.recursionDesired) flags |= FLAG_RD;
  if (parts.authoritative === true) flags |= FLAG_AA;
  if (parts.truncated === true) flags |= FLAG_TC;
  const additionals: Answer[] = [...(parts.additionals ?? [])];
  if (q.ednsPayload !== undefined) {
    additionals.push({ type: "OPT", name: ".", udpPayloadSize: EDNS_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] });
  }
  return dnsPacket.encode({ type: "response", id: q.id, flags, questions: [q.question], answers: [...(parts.answers ?? [])], additionals });
}

/** An upstream's response handed back to the client: same bytes, the client's id. */
export function withId(response: Buffer, id: number): Buffer {
  const out = Buffer.from(response);
  out.writeUInt16BE(id, 0);
  return out;
}

/** For a UDP client: the response itself if it fits, else the header and question with TC set. */
export function fitForUdp(q: Query, response: Buffer): Buffer {
  if (response.length <= udpLimit(q)) return response;
  const rcode = (response.length >= 4 ? response.readUInt16BE(2) & 0xf : 0) as (typeof RCODE)[Rcode];
  const name = (Object.keys(RCODE) as Rcode[]).find((k) => RCODE[k] === rcode) ?? "NOERROR";
  return buildResponse(q, { rcode: name, truncated: true });
}

/** The TC bit of a response. */
export function isTruncated(response: Buffer): boolean {
  return response.length >= 4 && (response.readUInt16BE(2) & FLAG_TC) !== 0;
}

/** Whether `response` answers the query we sent with `id` (id and the QR bit). */
export function answersId(response: Buffer, id: number): boolean {
  return response.length >= HEADER_BYTES && response.readUInt16BE(0) === id && (response.readUInt16BE(2) & FLAG_QR) !== 0;
}

function headerOnly(id: number, rd: boolean, rcode: number): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(FLAG_QR | (rd ? FLAG_RD : 0) | FLAG_RA | rcode, 2);
  return b;
}

/** Lower-case query type, the metric label (ztunnel's request_query_type). */
export function queryTypeLabel(q: Question): string {
  return String(q.type).toLowerCase();
}
