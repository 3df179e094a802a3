import { randomInt } from "node:crypto";
import { isTruncated, withId } from "./codec.js";
import { DnsUpstreamError } from "./errors.js";
import { formatUpstream, type Upstream, type UpstreamTransport } from "./transport.js";

// Forwarding to the upstream resolvers: the client's packet unchanged (EDNS and all) under a
// fresh random id; UDP first, retried across the upstreams within the deadline; TCP when a UDP
// answer comes back truncated. The response goes back with the client's id.

export interface ForwarderOptions {
  readonly upstreams: readonly Upstream[];
  /** Whole forward, every retry included; the client gets SERVFAIL after it. */
  readonly deadlineMs: number;
  /** One UDP attempt. */
  readonly attemptTimeoutMs: number;
}

export class Forwarder {
  private next = 0;

  constructor(
    private readonly transport: UpstreamTransport,
    private readonly opts: ForwarderOptions,
  ) {
    if (opts.upstreams.length === 0) throw new RangeError("the DNS forwarder needs at least one upstream");
  }

  /** The upstream's response to `raw` (a client query), carrying `clientId`. */
  async forward(raw: Buffer, clientId: number): Promise<Buffer> {
    const id = randomInt(0, 0x10000);
    const query = withId(raw, id);
    const deadline = Date.now() + this.opts.deadlineMs;
    const { upstreams } = this.opts;
    // Each upstream twice at most: an unreachable one refuses at once and must not spin.
    const maxAttempts = upstreams.length * 2;
    const start = this.next++ % upstreams.length;
    const errors: string[] = [];
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const server = upstreams[(start + attempt) % upstreams.length] as Upstream;
      try {
        let res = await this.transport.udp(server, query, id, Math.min(this.opts.attemptTimeoutMs, left));
        if (isTruncated(res)) {
          const tcpLeft = deadline - Date.now();
          if (tcpLeft <= 0) break;
          res = await this.transport.tcp(server, query, id, tcpLeft);
        }
        return withId(res, clientId);
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
      }
    }
    const tried = upstreams.map(formatUpstream).join(", ");
    throw new DnsUpstreamError(`no upstream resolver answered within ${this.opts.deadlineMs} ms (${tried})${errors.length > 0 ? `: ${errors.slice(-2).join("; ")}` : ""}`);
  }
}
