// stunnel4 configuration of the reference tunnel: mutual TLS, TLS 1.3 only, one AES-GCM
// suite, TCP_NODELAY on both sockets. One file per side; one [service] per forwarded port.

export const STUNNEL_CIPHERSUITE = "TLS_AES_128_GCM_SHA256";

export interface StunnelService {
  name: string;
  /** host:port stunnel listens on. */
  accept: string;
  /** host:port it forwards to. */
  connect: string;
}

export interface StunnelSide {
  /** true: plaintext in, TLS out (node of the client pod); false: TLS in, plaintext out. */
  client: boolean;
  services: readonly StunnelService[];
  certFile: string;
  keyFile: string;
  caFile: string;
}

export function renderStunnelConfig(side: StunnelSide): string {
  if (side.services.length === 0) throw new Error("a stunnel side needs at least one service");
  const lines = [
    "; generated per bench run (bench/stunnel/config.ts)",
    "foreground = yes",
    "pid =",
    "syslog = no",
    "debug = notice",
    "",
  ];
  for (const s of side.services) {
    if (!/^[a-z0-9-]+$/.test(s.name)) throw new Error(`stunnel service name "${s.name}" must be [a-z0-9-]`);
    lines.push(
      `[${s.name}]`,
      `client = ${side.client ? "yes" : "no"}`,
      `accept = ${s.accept}`,
      `connect = ${s.connect}`,
      `cert = ${side.certFile}`,
      `key = ${side.keyFile}`,
      `CAfile = ${side.caFile}`,
      // Both sides verify the peer's chain: the server thereby requires a client certificate.
      "verifyChain = yes",
      "sslVersionMin = TLSv1.3",
      "sslVersionMax = TLSv1.3",
      `ciphersuites = ${STUNNEL_CIPHERSUITE}`,
      "socket = l:TCP_NODELAY=1",
      "socket = r:TCP_NODELAY=1",
      "",
    );
  }
  return lines.join("\n");
}
