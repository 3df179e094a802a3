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
      `pod ${namespace}/${name} (uid ${uid}) is not in the workload state: with LOCAL_XDS_PATH, add it to the local config file; ` +
        "in Kubernetes mode, check that the pod exists in the API and ztunnel's informers are synced (readiness names a restarting one)",
    );
  }
}
