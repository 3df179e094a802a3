import { createPrivateKey, sign } from "node:crypto";
import { bitString, boolean, contextTag, octetString, oid, sequence, smallInteger, tlv } from "./der.js";
import { generateLeafKey } from "./leaf-key.js";
import { toPem } from "./leaf.js";

// A PKCS#10 request for istiod's CA (DESIGN §13): a fresh ECDSA P-256 key, no subject (no CN),
// one critical URI SAN = the SPIFFE identity, signed ECDSA-SHA256. Built from DER pieces, as the
// local CA builds leaves.

export interface WorkloadCsr {
  readonly csrPem: string;
  /** The key the certificate will be for (SEC1 PEM, never leaves memory). */
  readonly keyPem: string;
}

const SET = 0x31;
const ECDSA_SHA256 = sequence(oid("1.2.840.10045.4.3.2"));
const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";

export function createCsr(spiffeUri: string): WorkloadCsr {
  const key = generateLeafKey();
  const san = sequence(oid("2.5.29.17"), boolean(true), octetString(sequence(tlv(contextTag(6, false), Buffer.from(spiffeUri, "utf8")))));
  const attributes = tlv(contextTag(0, true), sequence(oid(EXTENSION_REQUEST), tlv(SET, sequence(san))));
  const info = sequence(smallInteger(0), sequence(), key.spki, attributes);
  const signature = sign("sha256", info, createPrivateKey(key.keyPem));
  return { csrPem: toPem("CERTIFICATE REQUEST", sequence(info, ECDSA_SHA256, bitString(signature))), keyPem: key.keyPem };
}
