import { createPrivateKey, X509Certificate, webcrypto, type KeyObject } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { webcrypto as wc } from "node:crypto";
import type * as X509 from "@peculiar/x509";
import { x509 } from "./x509.js";
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
  private readonly signingKey: wc.CryptoKey;
  private readonly signingAlgorithm: wc.Algorithm | wc.EcdsaParams;
  private readonly rootX509: X509.X509Certificate;

  private constructor(rootPem: string, signingKey: wc.CryptoKey, signingAlgorithm: wc.Algorithm | wc.EcdsaParams) {
    this.rootPem = rootPem;
    this.rootCert = new X509Certificate(rootPem);
    this.rootX509 = new x509.X509Certificate(rootPem);
    this.signingKey = signingKey;
    this.signingAlgorithm = signingAlgorithm;
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
    const { importAlg, signAlg } = algorithmsFor(key);
    const pkcs8 = key.export({ format: "der", type: "pkcs8" });
    const signingKey = await webcrypto.subtle.importKey("pkcs8", pkcs8, importAlg, false, ["sign"]);
    return new LocalCa(firstPem(certPem), signingKey as wc.CryptoKey, signAlg);
  }

  /** Issues a fresh workload certificate for identity (new key each time). */
  async issue(identity: Identity, opts: IssueOptions = {}): Promise<WorkloadCert> {
    try {
      const ttlMs = opts.ttlMs ?? 24 * 3_600_000;
      const now = Date.now();
      const notBefore = new Date(Math.floor((now - CLOCK_SKEW_MS) / 1000) * 1000);
      let notAfter = new Date(Math.floor((now + ttlMs) / 1000) * 1000);
      // A leaf never outlives its root.
      if (notAfter > this.rootX509.notAfter) notAfter = this.rootX509.notAfter;
      const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as wc.CryptoKeyPair;
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        issuer: this.rootX509.subject,
        // No subject (like istiod-issued certificates); the SAN is then critical (RFC 5280 4.2.1.6).
        subject: "",
        notBefore,
        notAfter,
        publicKey: keys.publicKey,
        signingKey: this.signingKey,
        signingAlgorithm: this.signingAlgorithm,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: "url", value: formatIdentity(identity) }], true),
          await x509.AuthorityKeyIdentifierExtension.create(this.rootX509.publicKey),
        ],
      });
      const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
      return Object.freeze({
        identity,
        certPem: leaf.toString("pem"),
        keyPem: toPem("PRIVATE KEY", Buffer.from(pkcs8)),
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

function algorithmsFor(key: KeyObject): { importAlg: wc.EcKeyImportParams | wc.RsaHashedImportParams; signAlg: wc.Algorithm | wc.EcdsaParams } {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "ec") {
    const curve = details.namedCurve;
    if (curve === "prime256v1" || curve === "P-256") {
      return { importAlg: { name: "ECDSA", namedCurve: "P-256" }, signAlg: ECDSA_SHA256 };
    }
    if (curve === "secp384r1" || curve === "P-384") {
      return { importAlg: { name: "ECDSA", namedCurve: "P-384" }, signAlg: { name: "ECDSA", hash: "SHA-384" } as wc.EcdsaParams };
    }
    throw new CaError("CA_ROOT_INVALID", `CA key curve ${String(curve)} is not supported (use P-256 or P-384)`);
  }
  if (key.asymmetricKeyType === "rsa") {
    return { importAlg: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, signAlg: { name: "RSASSA-PKCS1-v1_5" } };
  }
  throw new CaError("CA_ROOT_INVALID", `CA key type ${String(key.asymmetricKeyType)} is not supported (use ECDSA or RSA)`);
}

function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // positive INTEGER
  return Buffer.from(bytes).toString("hex");
}

function toPem(label: string, der: Buffer): string {
  const b64 = der.toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
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
