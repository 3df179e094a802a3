import type { NetnsRef, WorkloadInfo, WorkloadProxyManager } from "../../zds/index.js";
import type { WorkloadCert } from "../tls/ca.js";
import type { CertIssuer } from "../tls/cert-manager.js";
import { formatIdentity, type Identity } from "../tls/identity.js";
import { IdentityNotLocalError } from "./errors.js";
import type { IdentityGate } from "./identity-gate.js";

// The two places the identity gate sits, as decorators so the ZDS manager and the CA stay
// unaware of cluster mode: before a pod's proxies start (a refused Add is an error Ack), and
// in front of the CA (no certificate, not even a renewal, for an identity no pod on this
// node has).

/** Wraps the workload proxy manager: an Add proceeds only once Kubernetes confirms the pod. */
export function gateManager<H extends NetnsRef>(inner: WorkloadProxyManager<H>, gate: IdentityGate): WorkloadProxyManager<H> {
  return {
    async start(uid: string, info: WorkloadInfo, netns: H): Promise<void> {
      await gate.admit(uid, info);
      await inner.start(uid, info, netns);
    },
    stop(uid: string): Promise<void> {
      return inner.stop(uid);
    },
    onLost(report: (uid: string, error: string) => void): void {
      inner.onLost?.(report);
    },
  };
}

/** Wraps the CA: signs only identities that a pod on this node has, per Kubernetes. */
export class GatedIssuer implements CertIssuer {
  constructor(
    private readonly inner: CertIssuer,
    private readonly gate: Pick<IdentityGate, "confirms">,
    private readonly nodeName: string,
  ) {}

  get rootPem(): string {
    return this.inner.rootPem;
  }

  async issue(identity: Identity): Promise<WorkloadCert> {
    if (!this.gate.confirms(identity)) {
      throw new IdentityNotLocalError(
        `refusing to issue a certificate for ${formatIdentity(identity)}: Kubernetes shows no pod with that namespace and service account on node ${this.nodeName}`,
      );
    }
    return this.inner.issue(identity);
  }
}
