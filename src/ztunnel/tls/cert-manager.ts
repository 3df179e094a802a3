import { logger, type Logger } from "../../shared/log.js";
import { errorMessage } from "../../shared/errors.js";
import type { WorkloadCert } from "./ca.js";
import { formatIdentity, type Identity } from "./identity.js";

// Workload certificates on demand: one issuance per identity, shared by concurrent callers,
// cached, and renewed at half of its lifetime (with jitter) so a certificate in use never expires.

const MIN_RENEW_MS = 1_000;

/** Anything that can sign a workload certificate (the local CA now, istiod's CA later). */
export interface CertIssuer {
  readonly rootPem: string;
  issue(identity: Identity): Promise<WorkloadCert>;
}

export type CertListener = (cert: WorkloadCert) => void;

/** One identity's certificate as operators see it (config_dump, ambientctl certificates). */
export interface CertState {
  readonly identity: string;
  /** Available: a valid certificate is held; Initializing: the first one is being issued; Unavailable: the last attempt failed. */
  readonly state: "Available" | "Initializing" | "Unavailable";
  /** Why the last issuance failed (a held certificate stays in use while renewal retries). */
  readonly error?: string;
  readonly cert?: WorkloadCert;
}

interface Entry {
  cert: WorkloadCert | undefined;
  lastError: string | undefined;
  pending: Promise<WorkloadCert> | undefined;
  timer: NodeJS.Timeout | undefined;
  listeners: Set<CertListener>;
}

export class CertManager {
  private readonly entries = new Map<string, Entry>();
  private closed = false;

  constructor(
    private readonly issuer: CertIssuer,
    /** Retry delay after a failed renewal (the old certificate stays in use meanwhile). */
    private readonly retryMs = 5_000,
    private readonly log: Logger = logger("ztunnel.certs"),
    private readonly random: () => number = Math.random,
  ) {}

  get rootPem(): string {
    return this.issuer.rootPem;
  }

  /** The current certificate for identity, issuing one if needed. */
  async get(identity: Identity): Promise<WorkloadCert> {
    const key = formatIdentity(identity);
    const entry = this.entryFor(key);
    if (entry.cert !== undefined && entry.cert.notAfter.getTime() > Date.now()) return entry.cert;
    return this.issueInto(key, identity, entry);
  }

  /** The cached certificate without issuing; undefined when there is none yet. */
  peek(identity: Identity): WorkloadCert | undefined {
    return this.entries.get(formatIdentity(identity))?.cert;
  }

  /** Called with every renewed certificate for identity; returns an unsubscribe function. */
  onRenew(identity: Identity, listener: CertListener): () => void {
    const entry = this.entryFor(formatIdentity(identity));
    entry.listeners.add(listener);
    return () => entry.listeners.delete(listener);
  }

  /** Drops an identity (its last pod is gone): no more renewals. */
  forget(identity: Identity): void {
    const key = formatIdentity(identity);
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    this.entries.delete(key);
  }

  /** Every cached certificate (for /config_dump). */
  list(): WorkloadCert[] {
    const out: WorkloadCert[] = [];
    for (const e of this.entries.values()) if (e.cert !== undefined) out.push(e.cert);
    return out;
  }

  /** Every identity's certificate state, issued or not (for /config_dump). */
  states(): CertState[] {
    const now = Date.now();
    return [...this.entries].map(([identity, e]) => {
      const valid = e.cert !== undefined && e.cert.notAfter.getTime() > now;
      const state = valid ? "Available" : e.pending !== undefined && e.lastError === undefined ? "Initializing" : e.lastError !== undefined ? "Unavailable" : "Initializing";
      return { identity, state, ...(e.lastError !== undefined ? { error: e.lastError } : {}), ...(e.cert !== undefined ? { cert: e.cert } : {}) };
    });
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) clearTimeout(e.timer);
    this.entries.clear();
  }

  private entryFor(key: string): Entry {
    let entry = this.entries.get(key);
    if (entry === undefined) {
      entry = { cert: undefined, lastError: undefined, pending: undefined, timer: undefined, listeners: new Set() };
      this.entries.set(key, entry);
    }
    return entry;
  }

  private issueInto(key: string, identity: Identity, entry: Entry): Promise<WorkloadCert> {
    if (entry.pending !== undefined) return entry.pending;
    const p = this.issuer.issue(identity).then(
      (cert) => {
        entry.pending = undefined;
        if (this.closed || this.entries.get(key) !== entry) return cert;
        const renewed = entry.cert !== undefined;
        entry.cert = cert;
        entry.lastError = undefined;
        // Half of the validity left from now, not from notBefore: issuers backdate notBefore
        // for clock skew, which would otherwise pull renewal early (or into a renewal loop
        // for short-lived certificates). Never sooner than MIN_RENEW_MS.
        // Up to 10% earlier at random, so certificates issued together are not renewed together.
        const half = (cert.notAfter.getTime() - Date.now()) / 2;
        this.schedule(key, identity, entry, Math.max(half - half * 0.1 * this.random(), MIN_RENEW_MS));
        if (renewed) {
          for (const l of entry.listeners) l(cert);
        }
        return cert;
      },
      (err: unknown) => {
        entry.pending = undefined;
        entry.lastError = errorMessage(err);
        throw err;
      },
    );
    entry.pending = p;
    return p;
  }

  private schedule(key: string, identity: Identity, entry: Entry, delayMs: number): void {
    clearTimeout(entry.timer);
    // Capped so a far-off renewal never overflows the 32-bit timer.
    entry.timer = setTimeout(() => this.renew(key, identity, entry), Math.min(Math.max(delayMs, 0), 2 ** 31 - 1));
    // A pending renewal must not keep the process alive.
    entry.timer.unref();
  }

  private renew(key: string, identity: Identity, entry: Entry): void {
    this.issueInto(key, identity, entry).catch((err: unknown) => {
      this.log.warn({ identity: key, err: errorMessage(err) }, "certificate renewal failed; retrying");
      if (!this.closed && this.entries.get(key) === entry) this.schedule(key, identity, entry, this.retryMs);
    });
  }
}
