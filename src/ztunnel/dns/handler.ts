import type { Logger } from "../../shared/log.js";
import type { ConnectionLimiter, ThrottledLog } from "../proxy/limits.js";
import { canonicalRevision, canonicalService } from "../metrics/labels.js";
import type { Workload } from "../state/types.js";
import { buildResponse, fitForUdp, parseQuery, queryTypeLabel, type Query } from "./codec.js";
import type { DnsDirectory } from "./directory.js";
import type { Forwarder } from "./forwarder.js";
import type { TokenBucket } from "./limits.js";
import type { DnsLabels, DnsMetricsAccumulator } from "./metrics.js";
import type { DnsResolver } from "./resolver.js";

// One pod's DNS queries, whatever the transport: decode, rate-limit, answer from the state or
// forward, count. Returns the bytes to send back, or undefined to stay silent. Never throws:
// a query we cannot serve becomes FORMERR/SERVFAIL/REFUSED, garbage is dropped.

export type DnsProtocol = "udp" | "tcp";

export interface DnsHandlerDeps {
  readonly resolver: DnsResolver;
  readonly directory: () => DnsDirectory;
  /** The client pod as the state knows it now (undefined: not in the state yet). */
  readonly client: () => Workload | undefined;
  /** Used while the pod is not in the state: its namespace from ZDS. */
  readonly namespace: string;
  readonly forwarder: Forwarder;
  /** undefined: no rate limit (DNS_POD_QUERY_RATE=0). */
  readonly rate: TokenBucket | undefined;
  readonly upstreamInFlight: ConnectionLimiter;
  readonly metrics: DnsMetricsAccumulator;
  readonly throttled: ThrottledLog;
  readonly log: Logger;
}

export class DnsHandler {
  constructor(private readonly deps: DnsHandlerDeps) {}

  async handle(raw: Buffer, protocol: DnsProtocol): Promise<Buffer | undefined> {
    const parsed = parseQuery(raw);
    if (parsed.t === "drop") return undefined;
    if (parsed.t === "reply") {
      this.deps.log.debug({ protocol, reason: parsed.reason }, "malformed DNS query answered with an error");
      return parsed.reply;
    }
    const q = parsed.query;
    if (this.deps.rate !== undefined && !this.deps.rate.tryTake()) {
      this.deps.throttled.warn({ pod: this.deps.namespace, protocol }, "DNS query rate limit of the pod reached; queries are dropped (udp) or refused (tcp)");
      return protocol === "udp" ? undefined : buildResponse(q, { rcode: "REFUSED" });
    }
    const client = this.deps.client();
    const labels: DnsLabels = {
      queryType: queryTypeLabel(q.question),
      protocol,
      canonicalService: client === undefined ? "unknown" : canonicalService(client),
      canonicalRevision: client === undefined ? "unknown" : canonicalRevision(client),
    };
    this.deps.metrics.request(labels);
    const res = this.deps.resolver.resolve(this.deps.directory(), q.question, {
      namespace: client?.namespace ?? this.deps.namespace,
      network: client?.network ?? "",
    });
    if (res.kind === "answer") {
      const out = buildResponse(q, { rcode: res.rcode, authoritative: true, answers: res.answers, additionals: res.additionals });
      return protocol === "udp" ? fitForUdp(q, out) : out;
    }
    return await this.forward(q, labels, protocol);
  }

  private async forward(q: Query, labels: DnsLabels, protocol: DnsProtocol): Promise<Buffer> {
    const release = this.deps.upstreamInFlight.tryAcquire();
    if (release === undefined) {
      this.deps.throttled.warn({ max: this.deps.upstreamInFlight.max }, "too many upstream DNS queries in flight for the pod; answering SERVFAIL");
      return buildResponse(q, { rcode: "SERVFAIL" });
    }
    this.deps.metrics.upstreamRequest(labels);
    const started = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const res = await this.deps.forwarder.forward(q.raw, q.id);
      this.deps.metrics.upstreamDone(labels, seconds(), false);
      return protocol === "udp" ? fitForUdp(q, res) : res;
    } catch (err) {
      this.deps.metrics.upstreamDone(labels, seconds(), true);
      this.deps.throttled.warn({ name: q.question.name, type: q.question.type, err: (err as Error).message }, "DNS forwarding failed; answering SERVFAIL");
      return buildResponse(q, { rcode: "SERVFAIL" });
    } finally {
      release();
    }
  }
}
