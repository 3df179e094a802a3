import type { Readiness, WorkloadSummary } from "../../zds/index.js";

// How a pod's status (owned by the ZDS workload state) reads outside: the state name in
// /config_dump and /listeners, and the lines readiness lists. One line per pod, never two.

export type PodState = "Up" | "Pending" | "Failed";

export function podState(w: WorkloadSummary): PodState {
  return w.status === "running" ? "Up" : w.status === "failed" ? "Failed" : "Pending";
}

/** What /healthz/ready lists for the pods: one line per pod not running, or why not ready. */
export function pendingPods(r: Readiness, workloads: readonly WorkloadSummary[]): string[] {
  const items = workloads
    .filter((w) => w.status !== "running")
    .map((w) => `pod ${w.uid}${w.pod !== undefined ? ` (${w.pod})` : ""} ${w.status}${w.lastError !== undefined ? `: ${w.lastError}` : ""}`);
  if (!r.ready && items.length === 0) items.push(r.reason);
  return items;
}
