import type { NetnsHandle } from "../../native/index.js";
import type { Logger } from "../../shared/log.js";
import type { SocketFactory } from "../../sockets/socket-factory.js";
import { ConnectionLimiter, ThrottledLog } from "../proxy/limits.js";
import type { WorkloadStore } from "../state/store.js";
import { DnsDirectoryCache } from "./directory.js";
import { Forwarder } from "./forwarder.js";
import { DnsHandler } from "./handler.js";
import { TokenBucket } from "./limits.js";
import { DnsMetricsAccumulator } from "./metrics.js";
import { DnsResolver } from "./resolver.js";
import { DnsServer, type BoundListener } from "./server.js";
import { DNS_PORT, type DnsSettings } from "./settings.js";
import { SocketUpstreamTransport } from "./transport.js";

// The DNS proxy as a worker plug-in: one per worker (the state directory, resolver and metric
// accumulator are shared by its pods); startPod() brings up one pod's listeners with the pod's
// own forwarder (sockets in its netns), rate limit and in-flight cap.

export interface DnsPod {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly netns: NetnsHandle;
  /** The pod's in-pod socket factory (TCP listener, TCP upstream connections). */
  readonly factory: SocketFactory;
}

export interface WorkerDnsOptions {
  readonly settings: DnsSettings;
  readonly store: WorkloadStore;
  readonly mark: number;
  readonly reusePort: boolean;
  readonly ipv6: boolean;
  readonly log: Logger;
}

export interface RunningPodDns {
  readonly listeners: readonly BoundListener[];
  stopAccepting(): void;
  close(): Promise<void>;
}

export class WorkerDns {
  readonly metrics = new DnsMetricsAccumulator();
  private readonly directory: DnsDirectoryCache;
  private readonly resolver: DnsResolver;

  constructor(private readonly opts: WorkerDnsOptions) {
    this.directory = new DnsDirectoryCache(opts.store);
    this.resolver = new DnsResolver({ clusterDomain: opts.settings.clusterDomain, ipv6: opts.ipv6 });
  }

  async startPod(pod: DnsPod): Promise<RunningPodDns> {
    const { settings, store, mark } = this.opts;
    const log = this.opts.log.child({ pod: `${pod.namespace}/${pod.name}`, component: "dns" });
    const throttled = new ThrottledLog(log);
    const transport = new SocketUpstreamTransport({ netns: pod.netns, mark, tcp: pod.factory });
    const forwarder = new Forwarder(transport, {
      upstreams: settings.upstreams,
      deadlineMs: settings.upstreamDeadlineMs,
      attemptTimeoutMs: settings.upstreamAttemptMs,
    });
    const handler = new DnsHandler({
      resolver: this.resolver,
      directory: () => this.directory.get(),
      client: () => store.podWorkload(pod.uid, pod.namespace, pod.name),
      namespace: pod.namespace,
      forwarder,
      rate: settings.queriesPerSecond > 0 ? new TokenBucket(settings.queriesPerSecond, settings.burst) : undefined,
      upstreamInFlight: new ConnectionLimiter(settings.maxUpstreamInFlight),
      metrics: this.metrics,
      throttled,
      log,
    });
    const server = new DnsServer(
      {
        netns: pod.netns,
        mark,
        reusePort: this.opts.reusePort,
        addresses: this.opts.ipv6 ? ["127.0.0.1", "::1"] : ["127.0.0.1"],
        optional: ["::1"],
        port: DNS_PORT,
        factory: pod.factory,
        maxTcpConnections: settings.maxTcpConnections,
        tcpIdleMs: settings.tcpIdleMs,
      },
      handler,
      throttled,
      log,
    );
    const listeners = await server.start();
    return { listeners, stopAccepting: () => server.stopAccepting(), close: () => server.close() };
  }
}
