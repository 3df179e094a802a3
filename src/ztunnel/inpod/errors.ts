import { AmbientError } from "../../shared/errors.js";

// Failures of the in-pod workload proxies, as the ZDS Ack and readiness report them.

export class WorkerExitedError extends AmbientError {
  constructor(index: number, reason: string) {
    super("ZTUNNEL_WORKER_EXITED", `proxy worker ${index} exited (${reason}); it is being replaced and its pods re-added`);
  }
}

export class PodStartError extends AmbientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ZTUNNEL_POD_START", message, options);
  }
}

export class PodUnknownError extends AmbientError {
  constructor(uid: string, namespace: string, name: string) {
    super(
      "ZTUNNEL_POD_UNKNOWN",
      `pod ${namespace}/${name} (uid ${uid}) is not in the workload state and its ZDS WorkloadInfo names no service account, so it has no identity to serve: ` +
        "the node agent must send the pod's service account (Istio's agent always does), or the workload state must have the pod " +
        "(LOCAL_XDS_PATH: the local config file; Kubernetes mode: ztunnel's informers, synced per readiness)",
    );
  }
}
