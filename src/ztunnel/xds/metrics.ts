import { Counter, Gauge, type Registry } from "prom-client";

// istiod connection metrics with the names Istio's ztunnel exports, created before the
// process registry exists (the source starts first) and registered into it later.

export type TerminationReason = "ConnectionError" | "Error" | "Reconnect" | "Complete";

export interface XdsMetricsSink {
  termination(reason: TerminationReason): void;
  message(typeUrl: string, bytes: number): void;
}

export class XdsMetrics implements XdsMetricsSink {
  readonly terminations = new Counter({
    name: "istio_xds_connection_terminations_total",
    help: "The total number of completed connections to xds server (unstable)",
    labelNames: ["reason"],
    registers: [],
  });
  readonly messages = new Counter({ name: "istio_xds_message_total", help: "Total number of messages received (unstable)", labelNames: ["url"], registers: [] });
  readonly messageBytes = new Counter({
    name: "istio_xds_message_bytes_total",
    help: "Total number of bytes received (unstable)",
    labelNames: ["url"],
    registers: [],
  });

  termination(reason: TerminationReason): void {
    this.terminations.inc({ reason });
  }

  message(typeUrl: string, bytes: number): void {
    this.messages.inc({ url: typeUrl });
    this.messageBytes.inc({ url: typeUrl }, bytes);
  }

  register(registry: Registry): void {
    registry.registerMetric(this.terminations);
    registry.registerMetric(this.messages);
    registry.registerMetric(this.messageBytes);
  }
}

/** istio_build{component="ztunnel",tag=<version>} 1. */
export function registerBuildInfo(registry: Registry, tag: string): void {
  const g = new Gauge({ name: "istio_build", help: "Istio component build info", labelNames: ["component", "tag"], registers: [registry] });
  g.set({ component: "ztunnel", tag }, 1);
}
