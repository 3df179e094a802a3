import type { PodView, RedirectionState } from "./model.js";

/**
 * Where enrollment comes from: the Kubernetes API (informers) or a local inventory file. The
 * controller is level-based: a source only says "something changed" and answers questions
 * about its current view; the controller diffs that view with what is enrolled.
 */
export interface EnrollmentSource {
  readonly kind: "kubernetes" | "inventory";
  /** Starts watching; resolves once the first full view is loaded. */
  start(onChange: () => void): Promise<void>;
  /** Every pod of this node the source knows. */
  pods(): PodView[];
  /** Labels of a namespace; undefined when the namespace is unknown. */
  namespaceLabels(namespace: string): Record<string, string> | undefined;
  /**
   * A pod named in a CNI event. `namespace` may be empty (podman passes only the name).
   * Kubernetes: the informer cache, then a GET (the cache may lag the runtime).
   */
  lookup(namespace: string, name: string): Promise<PodView | undefined>;
  /** Records progress on the pod (Kubernetes: pods/status merge patch); undefined removes it. */
  setRedirection(pod: PodView, state: RedirectionState | undefined): Promise<void>;
  /** Undefined when ready, else what is missing (for /readyz). */
  notReadyReason(): string | undefined;
  stop(): Promise<void>;
}
