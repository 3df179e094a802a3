import { createPrivateKey, randomBytes, X509Certificate, webcrypto, type KeyObject } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { webcrypto as wc } from "node:crypto";
import { LeafSigner, signatureAlgorithmOf, toPem } from "./leaf.js";
import { generateLeafKey } from "./leaf-key.js";
import { AmbientError } from "../../shared/errors.js";
import { formatIdentity, type Identity } from "./identity.js";

// The local CA: a root (certificate + key on disk, shared by every node) that signs SPIFFE
// workload certificates in process. Leaf keys never leave memory.

export const ROOT_CERT_FILE = "root-cert.pem";
export const ROOT_KEY_FILE = "ca-key.pem";

export class CaError extends AmbientError {
  constructor(code: "CA_ROOT_MISSING" | "CA_ROOT_INVALID" | "CA_ISSUE_FAILED", message: string, cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
  }
}

/** A workload certificate with its private key, ready for tls.createSecureContext. */
export interface WorkloadCert {
  readonly identity: Identity;
  readonly certPem: string;
  readonly keyPem: string;
  /** PEM of the root that signed it (the trust anchor for peers). */
  readonly rootPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface IssueOptions {
  /** Validity of a leaf; Istio's default workload certificate lifetime is 24 h. */
  ttlMs?: number;
}

const EC_P256: wc.EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const ECDSA_SHA256: wc.EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const CLOCK_SKEW_MS = 60_000;

export class LocalCa {
  readonly rootPem: string;
  readonly rootCert: X509Certificate;
  private readonly rootNotAfter: Date;
  private readonly leaf: LeafSigner;

  private constructor(rootPem: string, key: KeyObject) {
    this.rootPem = rootPem;
    this.rootCert = new X509Certificate(rootPem);
    this.rootNotAfter = new Date(this.rootCert.validTo);
    this.leaf = new LeafSigner(this.rootCert.raw, key);
  }

  /** Loads `root-cert.pem` + `ca-key.pem` from dir; generates them only when `generate` is set. */
  static async fromDir(dir: string, opts: { generate?: boolean; trustDomain?: string } = {}): Promise<LocalCa> {
    const certPath = join(dir, ROOT_CERT_FILE);
    const keyPath = join(dir, ROOT_KEY_FILE);
    const [certPem, keyPem] = await Promise.all([readOptional(certPath), readOptional(keyPath)]);
    if (certPem !== undefined && keyPem !== undefined) return LocalCa.fromPem(certPem, keyPem);
    if (certPem !== undefined || keyPem !== undefined) {
      const missing = certPem === undefined ? certPath : keyPath;
      throw new CaError("CA_ROOT_MISSING", `${missing} is missing while its pair exists; restore it (every node must share one root)`);
    }
    if (opts.generate !== true) {
      throw new CaError(
        "CA_ROOT_MISSING",
        `no CA root in ${dir} (${ROOT_CERT_FILE} + ${ROOT_KEY_FILE}); copy the mesh root there, or set CA_ROOT_GENERATE=true to create one`,
      );
    }
    const generated = await generateRoot(opts.trustDomain ?? "cluster.local");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeAtomic(keyPath, generated.keyPem, 0o600);
    await writeAtomic(certPath, generated.certPem, 0o644);
    return LocalCa.fromPem(generated.certPem, generated.keyPem);
  }

  /** Root from PEM; ECDSA (P-256/P-384) or RSA keys in PKCS#8, SEC1 or PKCS#1 form. */
  static async fromPem(certPem: string, keyPem: string): Promise<LocalCa> {
    let cert: X509Certificate;
    let key: KeyObject;
    try {
      cert = new X509Certificate(certPem);
      key = createPrivateKey(keyPem);
    } catch (err) {
      throw new CaError("CA_ROOT_INVALID", `CA root is not readable PEM: ${(err as Error).message}`, err);
    }
    if (!cert.ca) throw new CaError("CA_ROOT_INVALID", "CA root certificate is not a CA (basicConstraints CA:FALSE)");
    if (!cert.checkPrivateKey(key)) throw new CaError("CA_ROOT_INVALID", "CA key does not belong to the root certificate");
    // Refuses unsupported key types and curves here, not at the first issuance.
    if (signatureAlgorithmOf(key) === undefined) {
      const what = key.asymmetricKeyType === "ec" ? `curve ${String(key.asymmetricKeyDetails?.namedCurve)}` : `type ${String(key.asymmetricKeyType)}`;
      throw new CaError("CA_ROOT_INVALID", `CA key ${what} is not supported (use ECDSA P-256/P-384 or RSA)`);
    }
    return new LocalCa(firstPem(certPem), key);
  }

  /** Issues a fresh workload certificate for identity (new key each time). */
  async issue(identity: Identity, opts: IssueOptions = {}): Promise<WorkloadCert> {
    try {
      const ttlMs = opts.ttlMs ?? 24 * 3_600_000;
      const now = Date.now();
      const notBefore = new Date(Math.floor((now - CLOCK_SKEW_MS) / 1000) * 1000);
      let notAfter = new Date(Math.floor((now + ttlMs) / 1000) * 1000);
      // A leaf never outlives its root.
      if (notAfter > this.rootNotAfter) notAfter = this.rootNotAfter;
      const key = generateLeafKey();
      const certPem = this.leaf.sign({ serial: randomSerialBytes(), notBefore, notAfter, spki: key.spki, uri: formatIdentity(identity) });
      return Object.freeze({
        identity,
        certPem,
        keyPem: key.keyPem,
        rootPem: this.rootPem,
        notBefore,
        notAfter,
      });
    } catch (err) {
      throw new CaError("CA_ISSUE_FAILED", `issuing a certificate for ${formatIdentity(identity)} failed: ${(err as Error).message}`, err);
    }
  }
}

/** A fresh self-signed ECDSA P-256 root (10 years). Also used by tests to make foreign roots. */
export async function generateRoot(trustDomain: string, opts: { rsa?: boolean } = {}): Promise<{ certPem: string; keyPem: string }> {
  const alg: wc.RsaHashedKeyGenParams | wc.EcKeyGenParams = opts.rsa
    ? { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }
    : EC_P256;
  // Loaded on demand: the ASN.1 library costs ~20 MiB of memory that a running ztunnel, which
  // only signs leaves (leaf.ts), should not carry.
  const { x509 } = await import("./x509.js");
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as wc.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `O=${trustDomain}, CN=ambient-node local root`,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + 10 * 365 * 86_400_000),
    keys,
    signingAlgorithm: opts.rsa ? { name: "RSASSA-PKCS1-v1_5" } : ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { certPem: cert.toString("pem"), keyPem: toPem("PRIVATE KEY", Buffer.from(pkcs8)) };
}

function randomSerialBytes(): Buffer {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // positive INTEGER
  return bytes;
}

function randomSerial(): string {
  return randomSerialBytes().toString("hex");
}

function firstPem(pem: string): string {
  const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem);
  return m === null ? pem : `${m[0]}\n`;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CaError("CA_ROOT_INVALID", `cannot read ${path}: ${(err as Error).message}`, err);
  }
}

async function writeAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data, { mode, flag: "w" });
  await rename(tmp, path);
}
