// Istio traffic metrics: labels, the worker-side accumulator, the main-side registry.
export { ConnectionMeter, MetricsAccumulator, startFlushLoop, type CloseOptions, type FlushLoop, type MetricsDelta, type SeriesDelta } from "./accumulator.js";
export * from "./labels.js";
export { ZtunnelMetrics, type ZtunnelMetricsOptions } from "./registry.js";
