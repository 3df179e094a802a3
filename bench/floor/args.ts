// Command line of bench/floor/relay.ts, parsed and checked in one place (tested in
// test/unit/bench-floor-args.test.ts): a mistake says what is wrong before any socket opens.

export const FLOOR_MODES = ["tcp", "tls-client", "tls-server"] as const;
export type FloorMode = (typeof FLOOR_MODES)[number];

/** The stunnel reference's suite (bench/stunnel/config.ts), in Node's spelling. */
export const FLOOR_CIPHERSUITE = "TLS_AES_128_GCM_SHA256";

export interface HostPort {
  host: string;
  port: number;
}

export interface FloorForward {
  listen: HostPort;
  connect: HostPort;
}

export interface FloorArgs {
  mode: FloorMode;
  forwards: FloorForward[];
  /** Certificate files (both TLS modes; absent for tcp). */
  pki?: { certFile: string; keyFile: string; caFile: string };
}

export class FloorUsageError extends Error {
  override readonly name = "FloorUsageError";
}

function hostPort(s: string, what: string): HostPort {
  const i = s.lastIndexOf(":");
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new FloorUsageError(`${what} "${s}" is not host:port`);
  return { host: s.slice(0, i), port };
}

/** Renders the arguments parseFloorArgs reads (what bench/floor/tunnel.ts passes). */
export function floorArgv(a: FloorArgs): string[] {
  const out: string[] = [a.mode, ...a.forwards.map((f) => `${f.listen.host}:${f.listen.port}=${f.connect.host}:${f.connect.port}`)];
  if (a.pki !== undefined) out.push("--cert", a.pki.certFile, "--key", a.pki.keyFile, "--ca", a.pki.caFile);
  return out;
}

export function parseFloorArgs(argv: readonly string[]): FloorArgs {
  const [mode, ...rest] = argv;
  if (!(FLOOR_MODES as readonly string[]).includes(mode ?? "")) throw new FloorUsageError(`mode must be one of ${FLOOR_MODES.join(", ")} (got "${mode ?? ""}")`);
  const forwards: FloorForward[] = [];
  const files: Record<string, string> = {};
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === "--cert" || arg === "--key" || arg === "--ca") {
      const v = rest[++i];
      if (v === undefined || v === "") throw new FloorUsageError(`${arg} needs a file`);
      files[arg.slice(2)] = v;
      continue;
    }
    const eq = arg.indexOf("=");
    if (eq < 0) throw new FloorUsageError(`"${arg}" is neither a flag nor <listen host:port>=<connect host:port>`);
    forwards.push({ listen: hostPort(arg.slice(0, eq), "listen address"), connect: hostPort(arg.slice(eq + 1), "connect address") });
  }
  if (forwards.length === 0) throw new FloorUsageError("at least one <listen>=<connect> forward is needed");
  const m = mode as FloorMode;
  if (m === "tcp") {
    if (Object.keys(files).length > 0) throw new FloorUsageError("tcp mode takes no certificates");
    return { mode: m, forwards };
  }
  const { cert, key, ca } = files;
  if (cert === undefined || key === undefined || ca === undefined) throw new FloorUsageError(`${m} needs --cert, --key and --ca`);
  return { mode: m, forwards, pki: { certFile: cert, keyFile: key, caFile: ca } };
}
