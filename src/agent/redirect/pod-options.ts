// Per-pod deviations from the node's redirect options, read from the pod's annotations. Istio:
// `ambient.istio.io/dns-capture: "false"` keeps a pod's DNS away from ztunnel even when the
// node captures DNS (AMBIENT_DNS_CAPTURE); "true" opts a pod in on a node that does not.

export const DNS_CAPTURE_ANNOTATION = "ambient.istio.io/dns-capture";

export interface PodRedirectOverrides {
  readonly dnsCapture?: boolean;
}

export function podRedirectOverrides(annotations: Readonly<Record<string, string>>): PodRedirectOverrides {
  const v = annotations[DNS_CAPTURE_ANNOTATION]?.trim().toLowerCase();
  if (v === "false") return { dnsCapture: false };
  if (v === "true") return { dnsCapture: true };
  // Absent or unreadable: the node's setting (an unreadable value is not a reason to break DNS).
  return {};
}

export function sameOverrides(a: PodRedirectOverrides, b: PodRedirectOverrides): boolean {
  return a.dnsCapture === b.dnsCapture;
}
