import { randomBytes, webcrypto, type webcrypto as wc, createPrivateKey } from "node:crypto";
import { generateRoot } from "../../../src/ztunnel/tls/ca.js";
import { LeafSigner, toPem } from "../../../src/ztunnel/tls/leaf.js";
import { x509 } from "../../../src/ztunnel/tls/x509.js";

// The fake istiod's PKI: a mesh root, an intermediate that signs workload leaves (so clients
// must send it in handshakes), and istiod's own serving certificate for istiod.istio-system.svc.

const EC: wc.EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIG: wc.EcdsaParams = { name: "ECDSA", hash: "SHA-256" };

export interface FakePki {
  readonly rootPem: string;
  readonly intermediatePem: string;
  readonly servingCertPem: string;
  readonly servingKeyPem: string;
  /** Signs a workload leaf with the intermediate. */
  signLeaf(spki: Buffer, uri: string, ttlMs: number): string;
}

export async function createPki(trustDomain = "cluster.local"): Promise<FakePki> {
  const root = await generateRoot(trustDomain);
  const rootCert = new x509.X509Certificate(root.certPem);
  const rootKey = await webcrypto.subtle.importKey("pkcs8", pemBody(root.keyPem), EC, true, ["sign"]);
  /** A fresh P-256 key pair and a day's certificate for it, signed by the root. */
  const issue = async (subject: string, extensions: (keys: wc.CryptoKeyPair) => Promise<Array<InstanceType<typeof x509.Extension>>>) => {
    const keys = (await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"])) as wc.CryptoKeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomBytes(8).toString("hex"),
      subject,
      issuer: rootCert.subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 86_400_000),
      publicKey: keys.publicKey,
      signingKey: rootKey,
      signingAlgorithm: SIG,
      extensions: await extensions(keys),
    });
    return { cert, keys };
  };
  const { cert: inter, keys: interKeys } = await issue(`O=${trustDomain}, CN=fake istiod intermediate`, async (keys) => [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(rootCert),
  ]);
  const interKeyPem = toPem("PRIVATE KEY", Buffer.from(await webcrypto.subtle.exportKey("pkcs8", interKeys.privateKey)));
  const { cert: serving, keys: servingKeys } = await issue("CN=istiod", async () => [
    new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "istiod.istio-system.svc" }]),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    await x509.AuthorityKeyIdentifierExtension.create(rootCert),
  ]);
  const signer = new LeafSigner(Buffer.from(inter.rawData), createPrivateKey(interKeyPem));
  return {
    rootPem: root.certPem,
    intermediatePem: inter.toString("pem"),
    servingCertPem: serving.toString("pem"),
    servingKeyPem: toPem("PRIVATE KEY", Buffer.from(await webcrypto.subtle.exportKey("pkcs8", servingKeys.privateKey))),
    signLeaf: (spki, uri, ttlMs) => {
      const t = Date.now();
      const serial = randomBytes(16);
      serial[0] = (serial[0] ?? 0) & 0x7f;
      return signer.sign({ serial, notBefore: new Date(Math.floor((t - 1_000) / 1000) * 1000), notAfter: new Date(Math.floor((t + ttlMs) / 1000) * 1000), spki, uri });
    },
  };
}

/** CSR → its SPKI (DER) and URI SANs, after checking its signature. */
export async function parseCsr(pem: string): Promise<{ spki: Buffer; uris: string[]; subject: string }> {
  const csr = new x509.Pkcs10CertificateRequest(pem);
  if (!(await csr.verify())) throw new Error("CSR signature does not verify");
  const raw = csr.getExtension("2.5.29.17");
  const san = raw === null ? undefined : new x509.SubjectAlternativeNameExtension(raw.rawData);
  const uris = (san?.names.items ?? []).filter((n) => n.type === "url").map((n) => n.value);
  return { spki: Buffer.from(csr.publicKey.rawData), uris, subject: csr.subject };
}

function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
}
