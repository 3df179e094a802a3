import type { WorkloadCert } from "../tls/ca.js";
import { formatIdentity, type Identity } from "../tls/identity.js";
import { ProxyError } from "../proxy/errors.js";

// A worker's copy of the certificates of the pods it serves. The main thread owns the CA and
// sends each pod identity's key+cert with the pod, and again on every renewal; a worker never
// issues. Reference-counted per identity: pods with the same service account share one.

type Listener = (cert: WorkloadCert) => void;

export class WorkerCerts {
  private readonly certs = new Map<string, WorkloadCert>();
  private readonly refs = new Map<string, number>();
  private readonly listeners = new Map<string, Set<Listener>>();

  retain(cert: WorkloadCert): void {
    const key = formatIdentity(cert.identity);
    this.refs.set(key, (this.refs.get(key) ?? 0) + 1);
    this.update(cert);
  }

  release(identity: Identity): void {
    const key = formatIdentity(identity);
    const n = (this.refs.get(key) ?? 1) - 1;
    if (n > 0) {
      this.refs.set(key, n);
      return;
    }
    this.refs.delete(key);
    this.certs.delete(key);
    this.listeners.delete(key);
  }

  /** A renewed certificate: replaces the held one (if any pod still uses it) and notifies. */
  update(cert: WorkloadCert): void {
    const key = formatIdentity(cert.identity);
    if (!this.refs.has(key)) return;
    const previous = this.certs.get(key);
    this.certs.set(key, cert);
    if (previous !== undefined && previous.certPem !== cert.certPem) {
      for (const l of this.listeners.get(key) ?? []) l(cert);
    }
  }

  async get(identity: Identity): Promise<WorkloadCert> {
    const cert = this.certs.get(formatIdentity(identity));
    if (cert === undefined) {
      throw new ProxyError("HBONE_HANDSHAKE_FAILED", `no certificate for ${formatIdentity(identity)} on this worker (is its pod enrolled?)`);
    }
    return cert;
  }

  onRenew(identity: Identity, listener: Listener): () => void {
    const key = formatIdentity(identity);
    let set = this.listeners.get(key);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(key, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  get size(): number {
    return this.certs.size;
  }
}
