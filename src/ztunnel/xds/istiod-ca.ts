import { readFileSync } from "node:fs";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { Client, status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/log.js";
import type { WorkloadCert } from "../tls/ca.js";
import type { CertIssuer } from "../tls/cert-manager.js";
import { createCsr } from "../tls/csr.js";
import { formatIdentity, type Identity } from "../tls/identity.js";
import type { IstiodConfig } from "./config.js";
import { callMetadata, channelFor, TokenFile } from "./credentials.js";
import { XdsError } from "./errors.js";
import { CA_METHOD, decodeAs, encodeAs, xdsTypes } from "./proto.js";
import { stringStruct } from "./struct.js";

// istiod's CA as a CertIssuer (the local CA is the other one): CreateCertificate with a CSR
// for the workload's SPIFFE id, impersonating it (istiod allows a ztunnel only identities of
// pods on its node). The answer is checked before use: the leaf is for our key and our id, and
// the chain verifies up to the configured root. The leaf and intermediates are sent in
// handshakes; the root file is the trust anchor for peers.

const CALL_TIMEOUT_MS = 10_000;
const ATTEMPTS = 3;

export interface IstiodCaOptions {
  readonly config: IstiodConfig;
  readonly log: Logger;
  readonly random?: () => number;
}

export class IstiodCa implements CertIssuer {
  private readonly client: Client;
  private readonly token: TokenFile;
  private rootText: string;

  constructor(private readonly opts: IstiodCaOptions) {
    const ch = channelFor(opts.config.ca);
    this.client = new Client(opts.config.ca.target, ch.creds, ch.options);
    this.token = new TokenFile(opts.config.tokenPath);
    this.rootText = readFileSync(opts.config.ca.rootCaPath, "utf8");
  }

  /** The mesh root(s) from CA_ROOT_CA, re-read at every issuance (root rotation). */
  get rootPem(): string {
    return this.rootText;
  }

  async issue(identity: Identity): Promise<WorkloadCert> {
    const id = formatIdentity(identity);
    let lastErr: unknown;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      if (attempt > 0) await sleep(Math.round((200 * 2 ** attempt) * (0.5 + (this.opts.random ?? Math.random)() / 2)));
      try {
        return await this.issueOnce(identity, id);
      } catch (err) {
        lastErr = err;
        // Only a transport failure is worth retrying here; a refusal is final for this call.
        if (!(err instanceof XdsError) || err.code !== "CA_REQUEST" || (err.cause as ServiceError | undefined)?.code !== GrpcStatus.UNAVAILABLE) break;
      }
    }
    throw lastErr;
  }

  close(): void {
    this.client.close();
  }

  private async issueOnce(identity: Identity, id: string): Promise<WorkloadCert> {
    try {
      this.rootText = readFileSync(this.opts.config.ca.rootCaPath, "utf8");
    } catch (err) {
      throw new XdsError("XDS_ROOT_CA", `CA root ${this.opts.config.ca.rootCaPath} cannot be read: ${errorMessage(err)}`, { cause: err });
    }
    const csr = createCsr(id);
    const types = xdsTypes();
    const req = encodeAs(types.caRequest, {
      csr: csr.csrPem,
      validity_duration: Math.round(this.opts.config.secretTtlMs / 1000),
      metadata: stringStruct({ ImpersonatedIdentity: id }),
    });
    const md = callMetadata(this.token, this.opts.config.clusterId, this.opts.config.ca.headers);
    const chain = await new Promise<string[]>((resolve, reject) => {
      this.client.makeUnaryRequest(
        CA_METHOD,
        (b: Buffer) => b,
        (b: Buffer) => decodeAs(types.caResponse, b),
        req,
        md,
        { deadline: Date.now() + CALL_TIMEOUT_MS },
        (err, res) => {
          if (err !== null) {
            reject(new XdsError("CA_REQUEST", `istiod CA (${this.opts.config.ca.url}) refused a certificate for ${id}: ${describe(err, this.opts.config.tokenPath)}`, { cause: err }));
            return;
          }
          const list = (res?.cert_chain as unknown[] | undefined) ?? [];
          resolve(list.filter((x): x is string => typeof x === "string"));
        },
      );
    });
    return this.verify(identity, id, chain, csr.keyPem);
  }

  private verify(identity: Identity, id: string, chain: readonly string[], keyPem: string): WorkloadCert {
    const pems = chain.flatMap((c) => c.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []);
    const bad = (why: string): XdsError => new XdsError("CA_RESPONSE", `istiod CA answer for ${id} refused: ${why}`);
    if (pems.length === 0) throw bad("no certificate in cert_chain");
    let certs: X509Certificate[];
    try {
      certs = pems.map((p) => new X509Certificate(p));
    } catch (err) {
      throw bad(`unparseable certificate: ${errorMessage(err)}`);
    }
    const leaf = certs[0] as X509Certificate;
    const uris = (leaf.subjectAltName ?? "").split(", ").filter((s) => s.startsWith("URI:")).map((s) => s.slice(4));
    if (uris.length !== 1 || uris[0] !== id) throw bad(`leaf URI SAN is ${uris.join(",") || "missing"}, expected ${id}`);
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw bad("leaf is not for the key we sent");
    for (let i = 0; i + 1 < certs.length; i++) {
      const child = certs[i] as X509Certificate;
      const parent = certs[i + 1] as X509Certificate;
      if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) throw bad(`certificate ${i} is not signed by certificate ${i + 1}`);
    }
    const roots = (this.rootText.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
    const top = certs[certs.length - 1] as X509Certificate;
    const anchored = roots.some((r) => r.fingerprint256 === top.fingerprint256 || (top.checkIssued(r) && top.verify(r.publicKey)));
    if (!anchored) throw bad(`chain does not lead to the root in ${this.opts.config.ca.rootCaPath}`);
    // Leaf + intermediates go into handshakes; a root in the chain is not sent.
    const sendable = pems.filter((_, i) => !roots.some((r) => r.fingerprint256 === (certs[i] as X509Certificate).fingerprint256));
    return Object.freeze({
      identity,
      certPem: `${sendable.join("\n")}\n`,
      keyPem,
      rootPem: this.rootText,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
    });
  }
}

function describe(err: ServiceError, tokenPath: string): string {
  const name = Object.entries(GrpcStatus).find(([, v]) => v === err.code)?.[0] ?? String(err.code);
  const hint = err.code === GrpcStatus.UNAUTHENTICATED ? ` (check the token in ${tokenPath}: audience istio-ca, not expired)` : "";
  return `${name}: ${err.details || err.message}${hint}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
