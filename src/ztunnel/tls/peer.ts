import { X509Certificate } from "node:crypto";
import type { ConnectionOptions, PeerCertificate, TlsOptions, TLSSocket } from "node:tls";
import { AmbientError } from "../../shared/errors.js";
import type { WorkloadCert } from "./ca.js";
import { formatIdentity, identityEquals, tryParseIdentity, type Identity } from "./identity.js";

// TLS settings for HBONE (DESIGN §8) and the peer identity checks on both ends.

export class PeerIdentityError extends AmbientError {
  constructor(code: "PEER_NO_CERT" | "PEER_NO_IDENTITY" | "PEER_IDENTITY_MISMATCH" | "PEER_TRUST_DOMAIN", message: string) {
    super(code, message);
  }
}

const HBONE_ALPN = ["h2"];
/**
 * The AES-GCM suites Istio's ztunnel offers (and nothing else, for interop), AES-128 first:
 * OpenSSL's default order starts with AES-256, about 10% more per byte here (openssl speed, 16 KiB blocks).
 */
export const HBONE_CIPHERS = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";

/**
 * Server side: our identity's cert, client certificate required and chained to our root.
 * Usable for tls.createServer and for server.setSecureContext (renewal).
 */
export function serverTlsOptions(cert: WorkloadCert): TlsOptions {
  return { ...serverTlsFlags(), cert: cert.certPem, key: cert.keyPem, ca: cert.rootPem };
}

/** The per-server (not per-context) part: setSecureContext does not change these. */
export function serverTlsFlags(): TlsOptions {
  return {
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
    maxVersion: "TLSv1.3",
    ciphers: HBONE_CIPHERS,
    // Our order, not the client's: a peer listing AES-256 first still gets AES-128.
    honorCipherOrder: true,
    ALPNProtocols: HBONE_ALPN,
  };
}

/**
 * Client side: our identity's cert, no SNI, the server chained to our root and its URI SAN
 * one of `expected` (checked by checkServerIdentity so a mismatch fails the handshake).
 */
export function clientTlsOptions(cert: WorkloadCert, expected: readonly Identity[]): ConnectionOptions {
  return {
    cert: cert.certPem,
    key: cert.keyPem,
    ca: cert.rootPem,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
    maxVersion: "TLSv1.3",
    ciphers: HBONE_CIPHERS,
    ALPNProtocols: HBONE_ALPN,
    // An empty servername sends no SNI extension; HBONE peers are addressed by IP.
    servername: "",
    checkServerIdentity: (_host: string, peer: PeerCertificate) => {
      try {
        verifyIdentityIn(identitiesOfDer(peer.raw), expected);
        return undefined;
      } catch (err) {
        return err as Error;
      }
    },
  };
}

/** URI SANs of a certificate, parsed with node:crypto. */
export function uriSans(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (san === undefined) return [];
  const out: string[] = [];
  for (const entry of splitSan(san)) {
    if (entry.startsWith("URI:")) out.push(unquote(entry.slice(4)));
  }
  return out;
}

/** Workload identities named in a certificate's URI SANs. */
export function identitiesOf(cert: X509Certificate): Identity[] {
  const ids: Identity[] = [];
  for (const uri of uriSans(cert)) {
    const id = tryParseIdentity(uri);
    if (id !== undefined) ids.push(id);
  }
  return ids;
}

function identitiesOfDer(der: Buffer): Identity[] {
  return identitiesOf(new X509Certificate(der));
}

/** The verified peer's identity on an authorised TLS socket. */
export function peerIdentity(socket: TLSSocket): Identity {
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) throw new PeerIdentityError("PEER_NO_CERT", "peer presented no certificate");
  const ids = identitiesOf(cert);
  const first = ids[0];
  if (first === undefined) throw new PeerIdentityError("PEER_NO_IDENTITY", "peer certificate has no SPIFFE URI SAN");
  return first;
}

/** Throws unless one of `ids` is in `expected`; returns the match. */
export function verifyIdentityIn(ids: readonly Identity[], expected: readonly Identity[]): Identity {
  for (const id of ids) if (expected.some((e) => identityEquals(e, id))) return id;
  const got = ids.length === 0 ? "no SPIFFE identity" : ids.map(formatIdentity).join(", ");
  throw new PeerIdentityError(
    ids.length === 0 ? "PEER_NO_IDENTITY" : "PEER_IDENTITY_MISMATCH",
    `peer identity ${got} is not one of the expected ${expected.map(formatIdentity).join(", ")}`,
  );
}

/** Server check: the client's identity must be in our trust domain (same root is not enough). */
export function verifyTrustDomain(socket: TLSSocket, trustDomain: string): Identity {
  const id = peerIdentity(socket);
  if (id.trustDomain !== trustDomain) {
    throw new PeerIdentityError(
      "PEER_TRUST_DOMAIN",
      `peer ${formatIdentity(id)} is from trust domain "${id.trustDomain}", expected "${trustDomain}"`,
    );
  }
  return id;
}

// Node renders SANs as "URI:a, DNS:b"; values containing ", " are JSON-quoted.
function splitSan(san: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < san.length; i++) {
    const c = san[i];
    if (c === '"' && san[i - 1] !== "\\") quoted = !quoted;
    if (!quoted && c === "," && san[i + 1] === " ") {
      out.push(cur);
      cur = "";
      i++;
      continue;
    }
    cur += c;
  }
  if (cur !== "") out.push(cur);
  return out;
}

function unquote(v: string): string {
  if (v.startsWith('"') && v.endsWith('"')) {
    try {
      return JSON.parse(v) as string;
    } catch {
      return v;
    }
  }
  return v;
}
