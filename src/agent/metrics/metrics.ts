import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

// The agent's Prometheus metrics (DESIGN §9): one registry per agent instance, so tests can run
// several agents in one process without sharing counters.
export const POD_READY_METRIC = "istio_cni_pod_ready_seconds";

export class AgentMetrics {
  readonly registry = new Registry();
  readonly ztunnelConnected: Gauge;
  readonly pluginRequests: Counter<"type" | "code">;
  readonly reconciles: Counter<"result">;
  readonly enrolledPods: Gauge<"state">;
  readonly verifierRepairs: Counter<"kind">;
  readonly verifierRuns: Counter;
  readonly unhealthyPods: Gauge;
  readonly podReady: Histogram;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.ztunnelConnected = new Gauge({ name: "ztunnel_connected", help: "Number of ztunnel instances connected to the ZDS socket", registers });
    this.pluginRequests = new Counter({
      name: "cni_plugin_requests_total",
      help: "CNI plugin events handled, by event type and HTTP response code",
      labelNames: ["type", "code"],
      registers,
    });
    this.reconciles = new Counter({ name: "enrollment_reconciles_total", help: "Per-pod enrollment reconciles, by result", labelNames: ["result"], registers });
    this.enrolledPods = new Gauge({ name: "enrolled_pods", help: "Pods in the mesh on this node, by redirection state", labelNames: ["state"], registers });
    this.verifierRepairs = new Counter({
      name: "verifier_repairs_total",
      help: "Repairs made by the periodic verifier: rules re-applied (kind=rules), Add re-sent because ztunnel's listeners were missing (kind=proxies)",
      labelNames: ["kind"],
      registers,
    });
    this.unhealthyPods = new Gauge({
      name: "verifier_unhealthy_pods",
      help: "Enrolled pods the verifier found without their in-pod rules or ztunnel listeners and has not repaired yet",
      registers,
    });
    this.podReady = new Histogram({
      name: POD_READY_METRIC,
      help: "Pod start latency through the mesh: CNI ADD received by the agent until ztunnel acked the pod (its listeners are up)",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.verifierRuns = new Counter({ name: "verifier_runs_total", help: "Verifier passes over all enrolled pods", registers });
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }
}
