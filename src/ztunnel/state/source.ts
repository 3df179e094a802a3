import type { StateSink } from "./store.js";

/**
 * A source of complete workload/service/policy state. Implementations are interchangeable:
 * the local file now, the Kubernetes API or istiod's xDS later; the store does not care.
 */
export interface StateSource {
  readonly name: string;
  /** Delivers the initial state to sink before resolving; throws when there is none. */
  start(sink: StateSink): Promise<void>;
  close(): Promise<void>;
}
