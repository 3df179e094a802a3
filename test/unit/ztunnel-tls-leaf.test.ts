import { createHash, generateKeyPairSync, webcrypto, X509Certificate } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildConfigDump, type ConfigDumpSources } from "../../src/ztunnel/admin/config-dump.js";
import { CaError, generateRoot, LocalCa, type WorkloadCert } from "../../src/ztunnel/tls/ca.js";
import { children, contextTag, DerError, issuerFields, oid, readElement, TAG, time, tlv, unsignedInteger, whole } from "../../src/ztunnel/tls/der.js";
import { LeafSigner, toPem } from "../../src/ztunnel/tls/leaf.js";
import { formatIdentity } from "../../src/ztunnel/tls/identity.js";
import { x509 } from "../../src/ztunnel/tls/x509.js";
import { id } from "../fixtures/ztunnel-pki.js";

// The workload leaves are built from DER pieces (leaf.ts, der.ts): these tests hold the
// encoding to DER's rules and the certificates to what peers and istiod-style profiles expect.

const hex = (b: Buffer): string => b.toString("hex");

describe("DER encoding", () => {
  it("encodes INTEGERs minimally and positive", () => {
    expect(hex(unsignedInteger(Buffer.from([0, 0, 0x7f])))).toBe("02017f");
    expect(hex(unsignedInteger(Buffer.from([0x80])))).toBe("02020080");
    expect(hex(unsignedInteger(Buffer.from([0, 0])))).toBe("020100");
    expect(hex(unsignedInteger(Buffer.from([0x01, 0x00])))).toBe("02020100");
  });

  it("encodes OIDs, long lengths and the RFC 5280 time switch at 2050", () => {
    expect(hex(oid("1.2.840.10045.4.3.2"))).toBe("06082a8648ce3d040302");
    expect(hex(oid("2.5.29.17"))).toBe("0603551d11");
    expect(hex(tlv(TAG.OCTET_STRING, Buffer.alloc(200)).subarray(0, 3))).toBe("0481c8");
    expect(hex(tlv(TAG.OCTET_STRING, Buffer.alloc(300)).subarray(0, 4))).toBe("0482012c");
    expect(time(new Date("2049-12-31T23:59:59Z")).toString("latin1", 2)).toBe("491231235959Z");
    expect(time(new Date("2049-12-31T23:59:59Z"))[0]).toBe(TAG.UTC_TIME);
    expect(time(new Date("2050-01-01T00:00:00Z")).toString("latin1", 2)).toBe("20500101000000Z");
    expect(time(new Date("2050-01-01T00:00:00Z"))[0]).toBe(TAG.GENERALIZED_TIME);
  });

  it("reads back what it writes and refuses truncated input", () => {
    const doc = tlv(TAG.SEQUENCE, oid("2.5.29.14"), tlv(TAG.OCTET_STRING, Buffer.alloc(130, 7)));
    const root = readElement(doc, 0);
    expect(root.end).toBe(doc.length);
    const [a, b] = children(doc, root);
    expect(a && hex(whole(doc, a))).toBe(hex(oid("2.5.29.14")));
    expect(b && b.end - b.contentStart).toBe(130);
    expect(() => readElement(doc.subarray(0, doc.length - 1), 0)).toThrow(DerError);
    expect(() => readElement(Buffer.from([0x30]), 0)).toThrow(DerError);
  });
});

/** The extension with `extOid` of a certificate: [critical, its extnValue DER]. */
function extensionOf(pem: string, extOid: string): { critical: boolean; value: Buffer } | undefined {
  const der = new X509Certificate(pem).raw;
  const tbs = children(der, readElement(der, 0))[0];
  if (tbs === undefined) throw new Error("no tbs");
  const wrapper = children(der, tbs).find((e) => e.tag === contextTag(3, true));
  const list = wrapper === undefined ? undefined : children(der, wrapper)[0];
  for (const ext of list === undefined ? [] : children(der, list)) {
    const parts = children(der, ext);
    const first = parts[0];
    const last = parts[parts.length - 1];
    if (first === undefined || last === undefined || !whole(der, first).equals(oid(extOid))) continue;
    return { critical: parts.length === 3, value: Buffer.from(der.subarray(last.contentStart, last.end)) };
  }
  return undefined;
}

describe("workload leaves signed with node:crypto", () => {
  it("carry the istiod profile: no subject, critical URI SAN, critical basicConstraints and keyUsage, AKI = root SKI", async () => {
    const root = await generateRoot("cluster.local");
    const ca = await LocalCa.fromPem(root.certPem, root.keyPem);
    const cert = await ca.issue(id("ns1", "sa1"));
    const x = new X509Certificate(cert.certPem);
    expect(x.subject ?? "").toBe("");
    expect(x.issuer).toBe(ca.rootCert.subject);
    expect(x.checkIssued(ca.rootCert)).toBe(true);
    expect(x.verify(ca.rootCert.publicKey)).toBe(true);
    expect(extensionOf(cert.certPem, "2.5.29.17")?.critical).toBe(true);
    expect(extensionOf(cert.certPem, "2.5.29.19")).toEqual({ critical: true, value: Buffer.from("3000", "hex") });
    expect(extensionOf(cert.certPem, "2.5.29.15")).toEqual({ critical: true, value: Buffer.from("03020780", "hex") });
    const ski = issuerFields(ca.rootCert.raw).subjectKeyId;
    expect(ski).toBeDefined();
    // AuthorityKeyIdentifier ::= SEQUENCE { [0] keyIdentifier }
    expect(extensionOf(cert.certPem, "2.5.29.35")?.value).toEqual(tlv(TAG.SEQUENCE, tlv(contextTag(0, false), ski ?? Buffer.alloc(0))));
  });

  it("without a root SKI the key identifier is the SHA-1 of the root's key (RFC 5280 method 1)", async () => {
    const ca = await rootWithoutSki("P-256", "SHA-256", "CN=no ski root", true);
    const fields = issuerFields(ca.rootCert.raw);
    expect(fields.subjectKeyId).toBeUndefined();
    const cert = await ca.issue(id("ns1", "sa1"));
    const keyId = createHash("sha1").update(fields.publicKey).digest();
    expect(extensionOf(cert.certPem, "2.5.29.35")?.value).toEqual(tlv(TAG.SEQUENCE, tlv(contextTag(0, false), keyId)));
    expect(new X509Certificate(cert.certPem).verify(ca.rootCert.publicKey)).toBe(true);
  });

  it("signs with a P-384 root using ecdsa-with-SHA384", async () => {
    const ca = await rootWithoutSki("P-384", "SHA-384", "CN=p384 root");
    const cert = await ca.issue(id("a", "b"));
    const der = new X509Certificate(cert.certPem).raw;
    expect(der.includes(oid("1.2.840.10045.4.3.3"))).toBe(true);
    expect(new X509Certificate(cert.certPem).verify(ca.rootCert.publicKey)).toBe(true);
    // The leaf never outlives its root.
    expect(cert.notAfter.getTime()).toBeLessThanOrEqual(new Date(ca.rootCert.validTo).getTime());
  });

  it("refuses a root key it cannot sign leaves with", async () => {
    const root = await generateRoot("cluster.local");
    const ed = generateKeyPairSync("ed25519");
    expect(() => new LeafSigner(new X509Certificate(root.certPem).raw, ed.privateKey)).toThrow(/unsupported CA key ed25519/);
    // LocalCa checks the pair first: a foreign key never reaches the signer.
    await expect(LocalCa.fromPem(root.certPem, ed.privateKey.export({ type: "pkcs8", format: "pem" }) as string)).rejects.toBeInstanceOf(CaError);
  });

  it("any serial and identity round-trips through a parser (property)", async () => {
    const root = await generateRoot("cluster.local");
    const key = (await import("node:crypto")).createPrivateKey(root.keyPem);
    const signer = new LeafSigner(new X509Certificate(root.certPem).raw, key);
    const rootCert = new X509Certificate(root.certPem);
    const segment = fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,40}$/);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 20 }), segment, segment, async (serialBytes, ns, sa) => {
        const serial = Buffer.from(serialBytes);
        serial[0] = (serial[0] ?? 0) & 0x7f;
        const leafKeys = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
        const uri = `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
        const pem = signer.sign({
          serial,
          notBefore: new Date("2026-01-01T00:00:00Z"),
          notAfter: new Date("2051-06-01T12:00:00Z"),
          spki: leafKeys.publicKey.export({ type: "spki", format: "der" }),
          uri,
        });
        const x = new X509Certificate(pem);
        const expectedSerial = BigInt(`0x${serial.toString("hex")}`);
        expect(BigInt(`0x${x.serialNumber}`)).toBe(expectedSerial);
        expect(x.subjectAltName).toBe(`URI:${uri}`);
        expect(new Date(x.validTo).toISOString()).toBe("2051-06-01T12:00:00.000Z");
        expect(x.verify(rootCert.publicKey)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });
});

describe("config_dump certificates", () => {
  it("shows each certificate's serial, parsing a certificate once across dumps", async () => {
    const root = await generateRoot("cluster.local");
    const ca = await LocalCa.fromPem(root.certPem, root.keyPem);
    const certs: WorkloadCert[] = [await ca.issue(id("a", "x")), await ca.issue(id("a", "y"))];
    const sources = {
      config: { inpodUds: "", packetMark: 1337, workerThreads: 2, clusterId: "Kubernetes", trustDomain: "cluster.local" },
      store: { version: 1, state: { workloads: [], services: [], policies: [] }, workloadByUid: () => undefined },
      certs: { list: () => certs, states: () => certs.map((cert) => ({ identity: formatIdentity(cert.identity), state: "Available" as const, cert })) },
      zdsConnected: true,
      zdsWorkloads: [],
      pods: [],
      workers: [],
      counters: {},
      connections: {},
      draining: false,
    } as unknown as ConfigDumpSources;
    const serials = (): string[] => (buildConfigDump(sources) as { certificates: Array<{ serial: string }> }).certificates.map((c) => c.serial);
    const first = serials();
    expect(first).toEqual(certs.map((c) => new X509Certificate(c.certPem).serialNumber));
    const parse = X509Certificate.prototype;
    const before = Object.getOwnPropertyDescriptor(parse, "serialNumber");
    let parsed = 0;
    Object.defineProperty(parse, "serialNumber", {
      configurable: true,
      get(this: X509Certificate) {
        parsed++;
        return before?.get?.call(this) as string;
      },
    });
    try {
      expect(serials()).toEqual(first);
      expect(parsed).toBe(0);
    } finally {
      if (before !== undefined) Object.defineProperty(parse, "serialNumber", before);
    }
  });
});

/** A CA from a self-signed ECDSA root made with the ASN.1 library (no subject key id). */
async function rootWithoutSki(namedCurve: "P-256" | "P-384", hash: "SHA-256" | "SHA-384", name: string, keyCertSignUsage = false): Promise<LocalCa> {
  const keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve }, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const rootCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: { name: "ECDSA", hash },
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      ...(keyCertSignUsage ? [new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)] : []),
    ],
  });
  const keyPem = toPem("PRIVATE KEY", Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)));
  return LocalCa.fromPem(rootCert.toString("pem"), keyPem);
}
