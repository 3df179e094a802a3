import { AmbientError } from "../../shared/errors.js";

// The little DER (X.690) a leaf certificate needs: encoders for the types a TBSCertificate
// uses, and a reader that walks an existing certificate to lift out its issuer-side fields
// (subject Name, SubjectKeyIdentifier, SubjectPublicKey). Building the few hundred bytes
// directly costs microseconds where a generic ASN.1 schema library costs milliseconds.

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
} as const;

/** A context-specific tag: [n] constructed (EXPLICIT) or primitive (IMPLICIT of a primitive type). */
export function contextTag(n: number, constructed: boolean): number {
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...content: readonly Buffer[]): Buffer {
  const body = content.length === 1 ? (content[0] as Buffer) : Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

export function sequence(...items: readonly Buffer[]): Buffer {
  return tlv(TAG.SEQUENCE, ...items);
}

/** A non-negative INTEGER from big-endian magnitude bytes, minimally encoded. */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const trimmed = Buffer.from(magnitude.subarray(i));
  const needsPad = trimmed.length === 0 || ((trimmed[0] ?? 0) & 0x80) !== 0;
  return tlv(TAG.INTEGER, needsPad ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

export function smallInteger(n: number): Buffer {
  return unsignedInteger(Buffer.from([n]));
}

export function oid(dotted: string): Buffer {
  const parts = dotted.split(".").map(Number);
  const [a = 0, b = 0, ...rest] = parts;
  const out: number[] = [a * 40 + b];
  for (const v of rest) {
    const chunk: number[] = [v & 0x7f];
    for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) chunk.unshift((x & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(TAG.OID, Buffer.from(out));
}

export function octetString(b: Buffer): Buffer {
  return tlv(TAG.OCTET_STRING, b);
}

/** BIT STRING with `unusedBits` padding bits in the last byte. */
export function bitString(b: Buffer, unusedBits = 0): Buffer {
  return tlv(TAG.BIT_STRING, Buffer.from([unusedBits]), b);
}

export function boolean(v: boolean): Buffer {
  return tlv(TAG.BOOLEAN, Buffer.from([v ? 0xff : 0]));
}

export const NULL = Buffer.from([TAG.NULL, 0]);

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, Z. */
export function time(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const p = (n: number): string => String(n).padStart(2, "0");
  const rest = `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(TAG.UTC_TIME, Buffer.from(`${p(y % 100)}${rest}`, "latin1"));
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(`${String(y).padStart(4, "0")}${rest}`, "latin1"));
}

/** One decoded element: its tag, and where its whole encoding and its content lie in `buf`. */
export interface DerElement {
  readonly tag: number;
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

export class DerError extends AmbientError {
  constructor(message: string) {
    super("DER_INVALID", message);
  }
}

/** Reads the element at `offset` of `buf` (definite lengths only, as DER requires). */
export function readElement(buf: Buffer, offset: number): DerElement {
  const tag = buf[offset];
  const first = buf[offset + 1];
  if (tag === undefined || first === undefined) throw new DerError(`truncated DER at ${offset}`);
  let len = first;
  let contentStart = offset + 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new DerError(`unsupported DER length form at ${offset}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[contentStart + i] ?? 0);
    contentStart += n;
  }
  const end = contentStart + len;
  if (end > buf.length) throw new DerError(`DER element at ${offset} runs past the end`);
  return { tag, start: offset, contentStart, end };
}

/** The child elements of a constructed element. */
export function children(buf: Buffer, parent: DerElement): DerElement[] {
  const out: DerElement[] = [];
  for (let at = parent.contentStart; at < parent.end; ) {
    const e = readElement(buf, at);
    out.push(e);
    at = e.end;
  }
  return out;
}

export function content(buf: Buffer, e: DerElement): Buffer {
  return buf.subarray(e.contentStart, e.end);
}

export function whole(buf: Buffer, e: DerElement): Buffer {
  return buf.subarray(e.start, e.end);
}

/** What an issuer contributes to a certificate it signs, read from its own certificate. */
export interface IssuerFields {
  /** The issuer's subject Name, byte for byte (the leaf's issuer must match it exactly). */
  readonly subject: Buffer;
  /** Its SubjectKeyIdentifier, when the certificate carries one. */
  readonly subjectKeyId: Buffer | undefined;
  /** The subjectPublicKey BIT STRING's key bytes (for a key identifier when there is no SKI). */
  readonly publicKey: Buffer;
}

const SKI_OID = oid("2.5.29.14");

export function issuerFields(certDer: Buffer): IssuerFields {
  const cert = readElement(certDer, 0);
  const [tbs] = children(certDer, cert);
  if (tbs === undefined || tbs.tag !== TAG.SEQUENCE) throw new DerError("certificate has no TBSCertificate");
  const fields = children(certDer, tbs);
  // version [0] is optional (v1 certificates omit it).
  const at = fields[0]?.tag === contextTag(0, true) ? 1 : 0;
  const subject = fields[at + 4];
  const spki = fields[at + 5];
  if (subject === undefined || spki === undefined) throw new DerError("TBSCertificate is missing its subject or key");
  const keyBits = children(certDer, spki)[1];
  if (keyBits === undefined || keyBits.tag !== TAG.BIT_STRING) throw new DerError("SubjectPublicKeyInfo has no key");
  let subjectKeyId: Buffer | undefined;
  const extWrapper = fields.find((f) => f.tag === contextTag(3, true));
  const extList = extWrapper === undefined ? undefined : children(certDer, extWrapper)[0];
  for (const ext of extList === undefined ? [] : children(certDer, extList)) {
    const parts = children(certDer, ext);
    const id = parts[0];
    const value = parts[parts.length - 1];
    if (id === undefined || value === undefined || !whole(certDer, id).equals(SKI_OID)) continue;
    const inner = readElement(certDer, value.contentStart);
    if (inner.tag === TAG.OCTET_STRING) subjectKeyId = Buffer.from(content(certDer, inner));
  }
  return {
    subject: Buffer.from(whole(certDer, subject)),
    subjectKeyId,
    publicKey: Buffer.from(content(certDer, keyBits).subarray(1)),
  };
}
