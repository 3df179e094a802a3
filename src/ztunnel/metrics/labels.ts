// The label set of Istio's TCP metrics as ztunnel reports them (its CommonTrafficLabels, without
// the optional locality labels), in exposition order. Missing values are "unknown", an absent
// response flag is "-", as in ztunnel.

export const TRAFFIC_LABEL_NAMES = [
  "reporter",
  "source_workload",
  "source_canonical_service",
  "source_canonical_revision",
  "source_workload_namespace",
  "source_principal",
  "source_app",
  "source_version",
  "source_cluster",
  "destination_service",
  "destination_service_namespace",
  "destination_service_name",
  "destination_workload",
  "destination_canonical_service",
  "destination_canonical_revision",
  "destination_workload_namespace",
  "destination_principal",
  "destination_app",
  "destination_version",
  "destination_cluster",
  "request_protocol",
  "response_flags",
  "connection_security_policy",
] as const;

export type TrafficLabelName = (typeof TRAFFIC_LABEL_NAMES)[number];
export type TrafficLabels = { readonly [K in TrafficLabelName]: string };

/** Index of response_flags in a label-value array (changed at close). */
export const RESPONSE_FLAGS_INDEX = TRAFFIC_LABEL_NAMES.indexOf("response_flags");

export const UNKNOWN = "unknown";
export const NO_FLAGS = "-";
/** Istio's default cluster ID. */
export const DEFAULT_CLUSTER = "Kubernetes";

export type Reporter = "source" | "destination";
export type SecurityPolicy = "mutual_tls" | "unknown";

/** What metrics need of a workload (the state's `Workload` is assignable). */
export interface MetricsWorkload {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount?: string;
  readonly trustDomain?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly cluster?: string;
}

export interface ServiceDescription {
  readonly hostname: string;
  readonly name: string;
  readonly namespace: string;
}

export interface TrafficLabelInput {
  readonly reporter: Reporter;
  readonly source?: MetricsWorkload | undefined;
  /**
   * The peer identity proven by mTLS (spiffe URI). ztunnel takes source_principal only from the
   * handshake, never from a workload looked up by IP, so it is passed explicitly.
   */
  readonly sourcePrincipal?: string | undefined;
  readonly destination?: MetricsWorkload | undefined;
  readonly destinationService?: ServiceDescription | undefined;
  readonly securityPolicy?: SecurityPolicy;
  readonly requestProtocol?: "tcp" | "http";
  readonly responseFlags?: string;
}

/** Istio's canonical service: the canonical-name label, app labels, else the workload name. */
export function canonicalService(w: MetricsWorkload): string {
  const l = w.labels;
  return l?.["service.istio.io/canonical-name"] ?? l?.["app.kubernetes.io/name"] ?? l?.app ?? w.name;
}

/** Istio's canonical revision: the canonical-revision label, version labels, else "latest". */
export function canonicalRevision(w: MetricsWorkload): string {
  const l = w.labels;
  return l?.["service.istio.io/canonical-revision"] ?? l?.["app.kubernetes.io/version"] ?? l?.version ?? "latest";
}

export function workloadPrincipal(w: MetricsWorkload): string {
  return w.serviceAccount === undefined ? UNKNOWN : `spiffe://${w.trustDomain ?? "cluster.local"}/ns/${w.namespace}/sa/${w.serviceAccount}`;
}

export function trafficLabels(input: TrafficLabelInput): TrafficLabels {
  const s = input.source;
  const d = input.destination;
  const svc = input.destinationService;
  const sCanon = s === undefined ? UNKNOWN : orUnknown(canonicalService(s));
  const sRev = s === undefined ? UNKNOWN : orUnknown(canonicalRevision(s));
  const dCanon = d === undefined ? UNKNOWN : orUnknown(canonicalService(d));
  const dRev = d === undefined ? UNKNOWN : orUnknown(canonicalRevision(d));
  return {
    reporter: input.reporter,
    source_workload: orUnknown(s?.name),
    source_canonical_service: sCanon,
    source_canonical_revision: sRev,
    source_workload_namespace: orUnknown(s?.namespace),
    source_principal: orUnknown(input.sourcePrincipal),
    source_app: sCanon,
    source_version: sRev,
    source_cluster: s === undefined ? UNKNOWN : (s.cluster ?? DEFAULT_CLUSTER),
    destination_service: orUnknown(svc?.hostname),
    destination_service_namespace: orUnknown(svc?.namespace),
    destination_service_name: orUnknown(svc?.name),
    destination_workload: orUnknown(d?.name),
    destination_canonical_service: dCanon,
    destination_canonical_revision: dRev,
    destination_workload_namespace: orUnknown(d?.namespace),
    destination_principal: d === undefined ? UNKNOWN : workloadPrincipal(d),
    destination_app: dCanon,
    destination_version: dRev,
    destination_cluster: d === undefined ? UNKNOWN : (d.cluster ?? DEFAULT_CLUSTER),
    request_protocol: input.requestProtocol ?? "tcp",
    response_flags: input.responseFlags === undefined || input.responseFlags === "" ? NO_FLAGS : input.responseFlags,
    connection_security_policy: input.securityPolicy ?? UNKNOWN,
  };
}

/** The values in TRAFFIC_LABEL_NAMES order (the compact form workers post). */
export function labelValues(labels: TrafficLabels): string[] {
  return TRAFFIC_LABEL_NAMES.map((n) => labels[n]);
}

function orUnknown(v: string | undefined): string {
  return v === undefined || v === "" ? UNKNOWN : v;
}
