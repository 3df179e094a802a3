import { createHash, sign, type KeyObject } from "node:crypto";
import { bitString, boolean, contextTag, issuerFields, NULL, octetString, oid, sequence, smallInteger, time, tlv, unsignedInteger, type IssuerFields } from "./der.js";

// Signs SPIFFE workload leaves with node:crypto: the TBSCertificate is assembled from DER
// pieces (most of them fixed per root and built once) and signed with one sign() call. This is
// the per-pod cost of enrollment, so it avoids generic ASN.1 machinery. The profile matches
// istiod-issued workload certificates: no subject, critical URI SAN, digitalSignature,
// serverAuth + clientAuth, not a CA, authority key id of the root.

/** The signature a root key makes, as it is named in the certificate. */
export interface SignatureAlgorithm {
  /** Digest passed to crypto.sign. */
  readonly hash: "sha256" | "sha384";
  /** The AlgorithmIdentifier DER. */
  readonly identifier: Buffer;
}

const ECDSA_SHA256 = sequence(oid("1.2.840.10045.4.3.2"));
const ECDSA_SHA384 = sequence(oid("1.2.840.10045.4.3.3"));
const RSA_SHA256 = sequence(oid("1.2.840.113549.1.1.11"), NULL);

/** The algorithm a root key signs leaves with; undefined for keys we do not support. */
export function signatureAlgorithmOf(key: KeyObject): SignatureAlgorithm | undefined {
  if (key.asymmetricKeyType === "rsa") return { hash: "sha256", identifier: RSA_SHA256 };
  if (key.asymmetricKeyType !== "ec") return undefined;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === "prime256v1" || curve === "P-256") return { hash: "sha256", identifier: ECDSA_SHA256 };
  if (curve === "secp384r1" || curve === "P-384") return { hash: "sha384", identifier: ECDSA_SHA384 };
  return undefined;
}

export interface LeafRequest {
  /** Positive serial number, big-endian. */
  readonly serial: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The leaf's SubjectPublicKeyInfo (DER). */
  readonly spki: Buffer;
  /** The SPIFFE identity, the only SAN. */
  readonly uri: string;
}

const CRITICAL = boolean(true);
const VERSION_3 = tlv(contextTag(0, true), smallInteger(2));
const EMPTY_NAME = sequence();

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(oid(id), CRITICAL, octetString(value)) : sequence(oid(id), octetString(value));
}

// Fixed extensions of every workload leaf.
const BASIC_CONSTRAINTS = extension("2.5.29.19", true, sequence());
const KEY_USAGE = extension("2.5.29.15", true, bitString(Buffer.from([0x80]), 7));
const EXT_KEY_USAGE = extension("2.5.29.37", false, sequence(oid("1.3.6.1.5.5.7.3.1"), oid("1.3.6.1.5.5.7.3.2")));

export class LeafSigner {
  private readonly algorithm: SignatureAlgorithm;
  private readonly issuer: Buffer;
  private readonly authorityKeyId: Buffer;

  /** `rootDer`: the signing certificate; `key`: its private key (checked by the caller). */
  constructor(
    rootDer: Buffer,
    private readonly key: KeyObject,
  ) {
    const algorithm = signatureAlgorithmOf(key);
    if (algorithm === undefined) throw new RangeError(`unsupported CA key ${String(key.asymmetricKeyType)}`);
    this.algorithm = algorithm;
    const root: IssuerFields = issuerFields(rootDer);
    this.issuer = root.subject;
    // The root's own key id when it has one (RFC 5280 4.2.1.1), else the SHA-1 of its key.
    const keyId = root.subjectKeyId ?? createHash("sha1").update(root.publicKey).digest();
    this.authorityKeyId = extension("2.5.29.35", false, sequence(tlv(contextTag(0, false), keyId)));
  }

  /** A signed leaf as PEM. */
  sign(req: LeafRequest): string {
    const san = extension("2.5.29.17", true, sequence(tlv(contextTag(6, false), Buffer.from(req.uri, "utf8"))));
    const tbs = sequence(
      VERSION_3,
      unsignedInteger(req.serial),
      this.algorithm.identifier,
      this.issuer,
      sequence(time(req.notBefore), time(req.notAfter)),
      EMPTY_NAME,
      req.spki,
      tlv(contextTag(3, true), sequence(BASIC_CONSTRAINTS, KEY_USAGE, EXT_KEY_USAGE, san, this.authorityKeyId)),
    );
    const signature = sign(this.algorithm.hash, tbs, this.key);
    const der = sequence(tbs, this.algorithm.identifier, bitString(signature));
    return toPem("CERTIFICATE", der);
  }
}

export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
