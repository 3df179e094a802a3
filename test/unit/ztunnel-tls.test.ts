import { X509Certificate } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CaError, generateRoot, LocalCa, type WorkloadCert } from "../../src/ztunnel/tls/ca.js";
import { CertManager, type CertIssuer } from "../../src/ztunnel/tls/cert-manager.js";
import { formatIdentity, parseIdentity, IdentityError, type Identity } from "../../src/ztunnel/tls/identity.js";
import { identitiesOf, uriSans, verifyIdentityIn } from "../../src/ztunnel/tls/peer.js";
import { id, tempDir, testCa } from "../fixtures/ztunnel-pki.js";

describe("Identity", () => {
  it("round-trips the SPIFFE form", () => {
    const s = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";
    expect(formatIdentity(parseIdentity(s))).toBe(s);
    expect(parseIdentity(s)).toEqual({ trustDomain: "cluster.local", namespace: "default", serviceAccount: "bookinfo-productpage" });
  });

  it.each(["spiffe://cluster.local/ns/default", "http://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/a/sa/b/extra", "spiffe://UPPER/ns/a/sa/b"])(
    "rejects %s",
    (s) => {
      expect(() => parseIdentity(s)).toThrow(IdentityError);
    },
  );
});

describe("LocalCa", () => {
  const dirs: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await d();
  });

  it("issues an ECDSA P-256 leaf with only a URI SAN, both EKUs, digitalSignature, chained to the root", async () => {
    const ca = await testCa();
    const cert = await ca.issue(id("ns1", "sa1"));
    const x = new X509Certificate(cert.certPem);
    expect(x.publicKey.asymmetricKeyType).toBe("ec");
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(x.subjectAltName).toBe("URI:spiffe://cluster.local/ns/ns1/sa/sa1");
    expect(uriSans(x)).toEqual(["spiffe://cluster.local/ns/ns1/sa/sa1"]);
    expect(identitiesOf(x)).toEqual([id("ns1", "sa1")]);
    expect(x.subject ?? "").toBe("");
    expect(x.ca).toBe(false);
    expect(x.keyUsage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]));
    expect(x.checkIssued(ca.rootCert)).toBe(true);
    expect(x.verify(ca.rootCert.publicKey)).toBe(true);
    expect(x.checkPrivateKey((await import("node:crypto")).createPrivateKey(cert.keyPem))).toBe(true);
  });

  it("refuses to start without a root unless generation is asked for", async () => {
    const d = await tempDir("ca");
    dirs.push(d.cleanup);
    await expect(LocalCa.fromDir(d.path)).rejects.toMatchObject({ code: "CA_ROOT_MISSING" });
    const generated = await LocalCa.fromDir(d.path, { generate: true });
    // A second start loads the same root instead of generating another one.
    const loaded = await LocalCa.fromDir(d.path);
    expect(loaded.rootPem).toBe(generated.rootPem);
    expect((await readFile(join(d.path, "root-cert.pem"), "utf8")).trim()).toBe(generated.rootPem.trim());
  });

  it("refuses half a pair and a key that does not match the certificate", async () => {
    const d = await tempDir("ca");
    dirs.push(d.cleanup);
    const a = await generateRoot("cluster.local");
    const b = await generateRoot("cluster.local");
    await writeFile(join(d.path, "root-cert.pem"), a.certPem);
    await expect(LocalCa.fromDir(d.path, { generate: true })).rejects.toThrow(/ca-key\.pem is missing/);
    await writeFile(join(d.path, "ca-key.pem"), b.keyPem);
    await expect(LocalCa.fromDir(d.path)).rejects.toThrow(CaError);
    await expect(LocalCa.fromDir(d.path)).rejects.toThrow(/does not belong/);
  });

  it("signs with an RSA root", async () => {
    const r = await generateRoot("cluster.local", { rsa: true });
    const ca = await LocalCa.fromPem(r.certPem, r.keyPem);
    const x = new X509Certificate((await ca.issue(id("a", "b"))).certPem);
    expect(x.verify(ca.rootCert.publicKey)).toBe(true);
    expect(x.publicKey.asymmetricKeyType).toBe("ec");
  });

  it("verifyIdentityIn names both sides on a mismatch", () => {
    expect(() => verifyIdentityIn([id("a", "x")], [id("a", "y")])).toThrow(/spiffe:\/\/cluster.local\/ns\/a\/sa\/x.*spiffe:\/\/cluster.local\/ns\/a\/sa\/y/);
  });
});

describe("CertManager", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function countingIssuer(ca: LocalCa, ttlMs: number): CertIssuer & { calls: number } {
    const issuer = {
      calls: 0,
      rootPem: ca.rootPem,
      issue: async (identity: Identity): Promise<WorkloadCert> => {
        issuer.calls++;
        return ca.issue(identity, { ttlMs });
      },
    };
    return issuer;
  }

  it("shares one issuance among concurrent requests and caches it", async () => {
    const issuer = countingIssuer(await testCa(), 3_600_000);
    const m = new CertManager(issuer);
    const [a, b, c] = await Promise.all([m.get(id("a", "s")), m.get(id("a", "s")), m.get(id("a", "s"))]);
    expect(issuer.calls).toBe(1);
    expect(a).toBe(b);
    expect(b).toBe(c);
    expect(await m.get(id("a", "s"))).toBe(a);
    await m.get(id("a", "other"));
    expect(issuer.calls).toBe(2);
    m.close();
  });

  it("renews at half of the remaining validity and tells subscribers", async () => {
    const issuer = countingIssuer(await testCa(), 2_000);
    const m = new CertManager(issuer);
    const t0 = Date.now();
    const first = await m.get(id("a", "s"));
    const renewed = new Promise<WorkloadCert>((resolve) => m.onRenew(id("a", "s"), resolve));
    const cert = await renewed;
    // ~1 s: half of the 2 s left, not half of the backdated notBefore..notAfter span.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(issuer.calls).toBe(2);
    expect(cert.certPem).not.toBe(first.certPem);
    expect(m.peek(id("a", "s"))).toBe(cert);
    m.close();
  }, 10_000);
});
