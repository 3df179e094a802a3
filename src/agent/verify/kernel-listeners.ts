import { netnsRunner, type CommandRunner } from "../redirect/index.js";

// Whether ztunnel's listeners are really in a pod, as the pod's own kernel sees them: `ss`
// (iproute2, sock_diag) run inside the pod netns lists its listening TCP sockets and bound UDP
// sockets with their SO_MARK. The agent cannot reach ztunnel's admin port from its DaemonSet,
// and the kernel is the ground truth anyway: a pod whose rules redirect to 15001/15006/15008
// with nothing listening there (or listening without ztunnel's mark) is blackholed.

export interface ExpectedListener {
  readonly proto: "tcp" | "udp";
  readonly port: number;
}

export interface ListenerCheck {
  /** What is wrong, one entry per listener ("tcp/15001 missing", "tcp/15008 not marked 0x539"); empty = all in place. */
  readonly problems: readonly string[];
}

/** The seam the verifier uses; undefined = cannot tell (the probe itself failed). */
export interface ProxyProbe {
  /** `dns`: the pod's DNS is captured, so ztunnel's 15053 must be there too. */
  check(netnsPath: string, opts?: { dns: boolean }): Promise<ListenerCheck | undefined>;
}

export interface SsSocket {
  readonly port: number;
  readonly mark: number | undefined;
}

/** `ss -H{t,u}lne` lines: state, recv-q, send-q, local address:port, peer, then details. */
export function parseSsListeners(text: string): SsSocket[] {
  const out: SsSocket[] = [];
  for (const line of text.split("\n")) {
    const cols = line.trim().split(/\s+/);
    const local = cols[3];
    if (local === undefined) continue;
    const port = Number(local.slice(local.lastIndexOf(":") + 1));
    if (!Number.isInteger(port)) continue;
    const m = /(?:^|\s)fwmark:(0x[0-9a-f]+|\d+)(?:\s|$)/i.exec(line);
    out.push({ port, mark: m?.[1] === undefined ? undefined : Number(m[1]) });
  }
  return out;
}

/** Compares what the kernel lists with what must be there, marked with `mark` under `mask`. */
export function compareListeners(expected: readonly ExpectedListener[], tcp: readonly SsSocket[], udp: readonly SsSocket[], mark: number, mask: number): string[] {
  const problems: string[] = [];
  for (const e of expected) {
    const found = (e.proto === "tcp" ? tcp : udp).filter((s) => s.port === e.port);
    if (found.length === 0) problems.push(`${e.proto}/${e.port} missing`);
    else if (!found.some((s) => s.mark !== undefined && (s.mark & mask) === (mark & mask))) problems.push(`${e.proto}/${e.port} not marked 0x${mark.toString(16)}`);
  }
  return problems;
}

export interface KernelProbeOptions {
  /** What must listen in a pod; `dns` = the pod's DNS is captured. */
  readonly expected: (dns: boolean) => readonly ExpectedListener[];
  readonly mark: number;
  readonly markMask: number;
  /** Runs ss in a netns (tests may pass their own); default nsenter with a 5 s deadline. */
  readonly runnerFor?: (netnsPath: string) => CommandRunner;
}

export class KernelProxyProbe implements ProxyProbe {
  constructor(private readonly opts: KernelProbeOptions) {}

  async check(netnsPath: string, opts: { dns: boolean } = { dns: false }): Promise<ListenerCheck | undefined> {
    const runner = (this.opts.runnerFor ?? ((p: string) => netnsRunner(p, { timeoutMs: 5_000 })))(netnsPath);
    const expected = this.opts.expected(opts.dns);
    const wantUdp = expected.some((e) => e.proto === "udp");
    const [tcp, udp] = await Promise.all([runner.run("ss", ["-Htlne"]), wantUdp ? runner.run("ss", ["-Hulne"]) : Promise.resolve({ code: 0, stdout: "", stderr: "" })]);
    // A failing ss (netns gone, binary missing) says nothing about the pod: cannot tell.
    if (tcp.code !== 0 || udp.code !== 0) return undefined;
    return { problems: compareListeners(expected, parseSsListeners(tcp.stdout), parseSsListeners(udp.stdout), this.opts.mark, this.opts.markMask) };
  }
}
