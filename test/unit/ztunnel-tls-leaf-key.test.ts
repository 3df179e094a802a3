import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";
import { describe, expect, it } from "vitest";
import { generateLeafKey, spkiFromSec1 } from "../../src/ztunnel/tls/leaf-key.js";
import { id, testCa } from "../fixtures/ztunnel-pki.js";

// Leaf keys: the public key and PEM derived from the SEC1 export must be the key's own.

describe("leaf keys", () => {
  it("derives the SPKI of the key's own public key, for many keys", () => {
    for (let i = 0; i < 200; i++) {
      const key = generateLeafKey();
      const fromPem = createPublicKey(createPrivateKey(key.keyPem)).export({ type: "spki", format: "der" });
      expect(key.spki.equals(fromPem)).toBe(true);
      expect(key.keyPem).toMatch(/^-----BEGIN EC PRIVATE KEY-----\n/);
    }
  });

  it("refuses a SEC1 layout it does not know (no public key, another curve) instead of guessing", () => {
    const p256 = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey.export({ type: "sec1", format: "der" });
    expect(spkiFromSec1(p256)).toBeDefined();
    expect(spkiFromSec1(p256.subarray(0, p256.length - 1))).toBeUndefined();
    const p384 = generateKeyPairSync("ec", { namedCurve: "secp384r1" }).privateKey.export({ type: "sec1", format: "der" });
    expect(spkiFromSec1(p384)).toBeUndefined();
  });

  it("an issued certificate matches its key, and TLS takes the key as it is", async () => {
    const cert = await (await testCa()).issue(id("ns", "sa"));
    expect(new X509Certificate(cert.certPem).checkPrivateKey(createPrivateKey(cert.keyPem))).toBe(true);
    expect(() => createSecureContext({ cert: cert.certPem, key: cert.keyPem, ca: cert.rootPem })).not.toThrow();
  });
});
