import { isIPv4, isIPv6 } from "node:net";
import { RedirectOptionsError } from "./errors.js";

// The numbers are Istio's (cni/pkg/iptables), so our agent and ztunnel interoperate with its.

export type IptablesVariantChoice = "auto" | "nft" | "legacy";

export interface RedirectPorts {
  /** ztunnel outbound listener (captured app egress). */
  outbound: number;
  /** ztunnel inbound plaintext listener. */
  inboundPlaintext: number;
  /** ztunnel inbound HBONE listener; never redirected (peers dial it directly). */
  inboundHbone: number;
  /** ztunnel DNS proxy (only with DNS capture on). */
  dns: number;
}

export interface RedirectOptions {
  /** Also program ip6tables and the IPv6 rule/route. */
  ipv6: boolean;
  /** Capture DNS (udp/tcp 53) to ztunnel's DNS proxy (on by default, as in Istio ≥ 1.25). */
  dnsCapture: boolean;
  /** SO_MARK on ztunnel's own sockets; packets carrying it bypass redirection. */
  mark: number;
  markMask: number;
  /** Connection mark for spoofed-source return traffic, routed locally via table `routeTable`. */
  connmark: number;
  connmarkMask: number;
  /** Source of kubelet probes after the host SNAT; accepted without redirection. */
  probeAddress: string;
  probeAddress6: string;
  ports: RedirectPorts;
  routeTable: number;
  rulePriority: number;
  /** Which iptables backend; "auto" follows the machine's `iptables` (see iptables-binary.ts). */
  iptables: IptablesVariantChoice;
}

export const DEFAULT_REDIRECT_OPTIONS: Readonly<RedirectOptions> = Object.freeze({
  ipv6: true,
  dnsCapture: true,
  mark: 0x539,
  markMask: 0xfff,
  connmark: 0x111,
  connmarkMask: 0xfff,
  probeAddress: "169.254.7.127",
  probeAddress6: "fd16:9254:7127:1337:ffff:ffff:ffff:ffff",
  ports: Object.freeze({ outbound: 15001, inboundPlaintext: 15006, inboundHbone: 15008, dns: 15053 }),
  routeTable: 100,
  rulePriority: 32764,
  iptables: "auto",
});

export type RedirectOptionsInput = Partial<Omit<RedirectOptions, "ports">> & { ports?: Partial<RedirectPorts> };

const KEYS = new Set(Object.keys(DEFAULT_REDIRECT_OPTIONS));
const PORT_KEYS = new Set(Object.keys(DEFAULT_REDIRECT_OPTIONS.ports));

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RedirectOptionsError(`redirect option ${name} must be an integer in ${min}..${max}, got ${String(v)}`);
  }
}

/** Validates once and returns a fully defaulted copy; unknown keys are rejected (likely typos). */
export function resolveRedirectOptions(input: RedirectOptionsInput = {}): RedirectOptions {
  for (const k of Object.keys(input)) {
    if (!KEYS.has(k)) throw new RedirectOptionsError(`unknown redirect option "${k}" (known: ${[...KEYS].join(", ")})`);
  }
  for (const k of Object.keys(input.ports ?? {})) {
    if (!PORT_KEYS.has(k)) throw new RedirectOptionsError(`unknown redirect port "${k}" (known: ${[...PORT_KEYS].join(", ")})`);
  }
  const o: RedirectOptions = {
    ...DEFAULT_REDIRECT_OPTIONS,
    ...input,
    ports: { ...DEFAULT_REDIRECT_OPTIONS.ports, ...input.ports },
  };
  for (const k of ["mark", "markMask", "connmark", "connmarkMask"] as const) checkInt(k, o[k], 0, 0xffffffff);
  for (const [k, v] of Object.entries(o.ports)) checkInt(`ports.${k}`, v, 1, 65535);
  checkInt("routeTable", o.routeTable, 1, 0xfffffffe);
  checkInt("rulePriority", o.rulePriority, 1, 32765);
  if ((o.mark & o.markMask) === (o.connmark & o.connmarkMask)) {
    throw new RedirectOptionsError("redirect options mark and connmark must differ under their masks");
  }
  if (!isIPv4(o.probeAddress)) throw new RedirectOptionsError(`probeAddress must be an IPv4 address, got "${o.probeAddress}"`);
  if (!isIPv6(o.probeAddress6)) throw new RedirectOptionsError(`probeAddress6 must be an IPv6 address, got "${o.probeAddress6}"`);
  if (!["auto", "nft", "legacy"].includes(o.iptables)) {
    throw new RedirectOptionsError(`redirect option iptables must be "auto", "nft" or "legacy", got "${String(o.iptables)}"`);
  }
  return o;
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
