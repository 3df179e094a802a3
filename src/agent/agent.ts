import { mkdir } from "node:fs/promises";
import { KubeConfig } from "@kubernetes/client-node";
import { errorMessage } from "../shared/errors.js";
import { logger, rootLogger, type Logger } from "../shared/log.js";
import { createZdsServer, ZdsNoConnectionError, type NetnsRef, type ZdsServer } from "../zds/index.js";
import { CniEventHandler } from "./cni-handler.js";
import type { AgentConfig } from "./config.js";
import { EnrollmentController } from "./enroll/controller.js";
import type { DecideOptions } from "./enroll/decide.js";
import { InventorySource } from "./enroll/inventory-source.js";
import { KubeSource } from "./enroll/kube-source.js";
import { PodLifecycle, type ZdsSink } from "./enroll/lifecycle.js";
import type { EnrollmentSource } from "./enroll/source.js";
import { startHealthServer, type HealthServer } from "./health/server.js";
import { ProbeSnat } from "./hostrules/probe-snat.js";
import { CniInstaller } from "./install/installer.js";
import type { PluginKubeSource } from "./install/kubeconfig.js";
import { AgentMetrics } from "./metrics/metrics.js";
import { addrsInNetns } from "./netns/addrs.js";
import { NetnsFinder } from "./netns/finder.js";
import { nativeOpener } from "./netns/native-opener.js";
import type { NetnsOpener } from "./netns/ops.js";
import { NetnsPathStore } from "./netns/store.js";
import { startPluginEventServer, type PluginEventServer } from "./pluginevent/server.js";
import { PodRedirector, hostRunner, netnsRunner, type CommandRunner, type IptablesVariant } from "./redirect/index.js";
import { KernelProxyProbe, type ExpectedListener, type ProxyProbe } from "./verify/kernel-listeners.js";
import { Verifier } from "./verify/verifier.js";

/** Seams for tests (and for running the agent on behalf of another netns). */
export interface AgentDeps {
  /** The process root logger; every component logs to a child with its scope (default: the process root). */
  log?: Logger;
  /** Runs node-side commands (ipset, iptables, backend detection); default: this process. */
  host?: CommandRunner;
  /** The node netns (processes there are hostNetwork, never pods); default /proc/self/ns/net. */
  hostNetnsPath?: string;
  kubeConfig?: KubeConfig;
  opener?: NetnsOpener;
  /** ztunnel's listeners in a pod (default: read from the pod's kernel with ss). */
  proxies?: ProxyProbe;
  iptablesVariant?: IptablesVariant;
  /** Base delay of the retry queue (default 200 ms). */
  retryBaseMs?: number;
  inventoryPollMs?: number;
}

function inClusterKubeSource(): PluginKubeSource | undefined {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) return undefined;
  const sa = "/var/run/secrets/kubernetes.io/serviceaccount";
  return { server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`, tokenFile: `${sa}/token`, caFile: `${sa}/ca.crt` };
}

/**
 * The node agent (istio-cni's role): enrollment source → controller → pod lifecycle, the ZDS
 * server, the plugin event server, the CNI installer, the verifier and /healthz /readyz /metrics.
 */
export class Agent {
  readonly metrics = new AgentMetrics({ defaultMetrics: true });
  readonly lifecycle: PodLifecycle;
  readonly controller: EnrollmentController;
  readonly source: EnrollmentSource;
  readonly redirector: PodRedirector;
  readonly store: NetnsPathStore;
  readonly verifier: Verifier;
  private zds: ZdsServer | undefined;
  private plugin: PluginEventServer | undefined;
  private installer: CniInstaller | undefined;
  private health: HealthServer | undefined;
  private probeSnat: ProbeSnat | undefined;
  private hostNetns: NetnsRef | undefined;
  private installState = "CNI plugin not installed yet";
  private stopping: Promise<void> | undefined;
  private readonly log: Logger;
  private readonly root: Logger;

  private constructor(
    readonly config: AgentConfig,
    private readonly deps: AgentDeps,
  ) {
    this.root = deps.log ?? rootLogger();
    this.log = logger("agent", this.root);
    const host = deps.host ?? hostRunner();
    this.redirector = new PodRedirector(
      { dnsCapture: config.dnsCapture, ipv6: config.ipv6 },
      { host, log: this.scoped("redirect"), ...(deps.iptablesVariant ? { variant: deps.iptablesVariant } : {}) },
    );
    this.store = new NetnsPathStore(config.runDir, this.scoped("netns-store"));
    this.source = config.inventoryPath
      ? new InventorySource({ path: config.inventoryPath, log: this.scoped("inventory"), ...(deps.inventoryPollMs ? { pollMs: deps.inventoryPollMs } : {}) })
      : new KubeSource({ kubeConfig: deps.kubeConfig ?? Agent.loadKubeConfig(config), nodeName: config.nodeName, log: this.scoped("kube-source") });
    const zdsSink: ZdsSink = {
      podAdded: (uid, info, netns) => (this.zds ? this.zds.podAdded(uid, info, netns) : Promise.reject(new ZdsNoConnectionError())),
      // Before the server exists no ztunnel holds the pod: nothing to delete.
      podDeleted: (uid) => (this.zds ? this.zds.podDeleted(uid) : Promise.resolve()),
    };
    const opener = deps.opener ?? nativeOpener;
    const addrsIn = (path: string): Promise<string[]> => addrsInNetns(netnsRunner(path));
    this.lifecycle = new PodLifecycle({
      log: this.scoped("pod-lifecycle"),
      zds: zdsSink,
      redirector: this.redirector,
      host: { addPod: (ips) => this.probeSnat?.addPod(ips) ?? Promise.resolve(), removePod: (ips) => this.probeSnat?.removePod(ips) ?? Promise.resolve() },
      opener,
      store: this.store,
      annotate: (pod, state) => this.source.setRedirection(pod, state),
      addrsIn,
      procRoot: config.procRoot,
      zdsDeferred: () => this.zds === undefined,
    });
    const finder = new NetnsFinder({
      log: this.scoped("netns-finder"),
      procRoot: config.procRoot,
      opener,
      hostNetns: () => this.hostNetns,
      addrsIn,
      persisted: (uid) => this.store.get(uid),
    });
    this.controller = new EnrollmentController(
      {
        log: this.scoped("enroll"),
        source: this.source,
        lifecycle: this.lifecycle,
        findNetns: (pod) => finder.find(pod),
        onReconcile: (ok) => {
          this.metrics.reconciles.inc({ result: ok ? "success" : "error" });
          this.updatePodGauge();
        },
      },
      { decide: this.decideOptions(), retryBaseMs: deps.retryBaseMs ?? 200, retryMaxMs: config.retryMaxBackoffMs, concurrency: 4 },
    );
    this.verifier = new Verifier({
      log: this.scoped("verifier"),
      lifecycle: this.lifecycle,
      redirector: this.redirector,
      zds: zdsSink,
      ...(config.verifyProxies ? { proxies: deps.proxies ?? this.kernelProbe() } : {}),
      onUnhealthy: (pods) => this.metrics.unhealthyPods.set(pods.length),
      dnsCapture: config.dnsCapture,
      intervalMs: config.verifyIntervalMs,
      onRepair: (kind) => this.metrics.verifierRepairs.inc({ kind }),
      onRun: () => this.metrics.verifierRuns.inc(),
    });
  }

  /** ztunnel's in-pod listeners as the pod's kernel lists them. */
  private kernelProbe(): ProxyProbe {
    const o = this.redirector.options;
    return new KernelProxyProbe({
      mark: o.mark,
      markMask: o.markMask,
      expected: (dns) => {
        const want: ExpectedListener[] = [o.ports.outbound, o.ports.inboundPlaintext, o.ports.inboundHbone].map((port) => ({ proto: "tcp", port }));
        // 15053 is bound only once DNS capture is on (DESIGN §7).
        if (dns) want.push({ proto: "udp", port: o.ports.dns });
        return want;
      },
    });
  }

  private scoped(scope: string): Logger {
    return logger(scope, this.root);
  }

  static loadKubeConfig(config: AgentConfig): KubeConfig {
    const kc = new KubeConfig();
    if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
    else kc.loadFromCluster();
    return kc;
  }

  /** Starts every part in dependency order; on failure stops what started and rethrows. */
  static async start(config: AgentConfig, deps: AgentDeps = {}): Promise<Agent> {
    const agent = new Agent(config, deps);
    try {
      await agent.run();
    } catch (err) {
      await agent.stop().catch(() => undefined);
      throw err;
    }
    return agent;
  }

  get httpPort(): number | undefined {
    return this.health?.port;
  }

  get pluginSocket(): string | undefined {
    return this.plugin?.socketPath;
  }

  /** What blocks readiness; empty = ready. */
  pending(): string[] {
    const out: string[] = [];
    if (!this.controller.initialSyncDone) out.push("initial enrollment pass not done");
    const src = this.source.notReadyReason();
    if (src) out.push(src);
    if (!this.zds) out.push("ZDS server not listening");
    if (!this.plugin) out.push("CNI plugin event server not listening");
    if (this.config.cniInstall && this.installState !== "") out.push(this.installState);
    // A pod whose rules lead nowhere (or whose listeners are not redirected to) is not served.
    for (const p of this.verifier.unhealthy()) out.push(`pod ${p.pod} not served: ${p.problems.join("; ")}`);
    return out;
  }

  private decideOptions(): DecideOptions {
    return { excludeNamespaces: this.config.excludeNamespaces, agentNamespace: this.config.podNamespace, selectors: this.config.enablementSelectors };
  }

  private async run(): Promise<void> {
    const c = this.config;
    await mkdir(c.runDir, { recursive: true, mode: 0o700 });
    this.health = await startHealthServer({ host: c.httpHost, port: c.httpPort, registry: this.metrics.registry, pending: () => this.pending(), log: this.scoped("agent-http") });
    const opener = this.deps.opener ?? nativeOpener;
    this.hostNetns = opener.open(this.deps.hostNetnsPath ?? "/proc/self/ns/net");
    const variant = await this.redirector.iptablesVariant();
    if (c.hostProbeSnat) {
      this.probeSnat = new ProbeSnat(this.deps.host ?? hostRunner(), {
        ipv6: c.ipv6,
        probeAddress: this.redirector.options.probeAddress,
        probeAddress6: this.redirector.options.probeAddress6,
        variant,
      });
      await this.probeSnat.ensure();
    }
    await this.store.load();
    // Existing pods first, so the first ZDS snapshot is complete: a ztunnel that connects to a
    // restarted agent must not drain pods the agent has not rediscovered yet.
    await this.controller.start();
    await this.pruneProbeSet();
    this.zds = createZdsServer(this.lifecycle, { socketPath: c.zdsSocket, ackTimeoutMs: c.zdsAckTimeoutMs, log: this.scoped("zds-server") });
    this.zds.on("connected", () => this.metrics.ztunnelConnected.set(this.zds?.connectedCount ?? 0));
    this.zds.on("live", () => this.metrics.ztunnelConnected.set(this.zds?.connectedCount ?? 0));
    this.zds.on("disconnected", () => this.metrics.ztunnelConnected.set(this.zds?.connectedCount ?? 0));
    // The snapshot carried every pending pod; finishing them (ipset, annotation) is the queue's job.
    this.zds.on("snapshotSent", () => this.controller.retryPending());
    const handler = new CniEventHandler({
      log: this.scoped("cni-events"),
      source: this.source,
      lifecycle: this.lifecycle,
      decide: this.decideOptions(),
      notReadyReason: () => {
        const p = this.pending().filter((x) => !x.startsWith("CNI plugin event"));
        return p.length === 0 ? undefined : p.join("; ");
      },
      onPodReady: (seconds) => this.metrics.podReady.observe(seconds),
      onResult: (type, code) => {
        this.metrics.pluginRequests.inc({ type, code: String(code) });
        this.updatePodGauge();
      },
    });
    this.plugin = await startPluginEventServer({ runDir: c.runDir, handler, log: this.scoped("pluginevent") });
    if (c.cniInstall) {
      this.installer = new CniInstaller({
        log: this.scoped("cni-install"),
        pluginBinary: c.pluginBinary,
        binDir: c.cniBinDir,
        netDir: c.cniNetDir,
        ...(c.cniConfName ? { confName: c.cniConfName } : {}),
        runDir: c.runDir,
        plugin: { excludeNamespaces: c.excludeNamespaces, podNamespace: c.podNamespace, enablementSelectors: c.enablementSelectors },
        ...(this.source.kind === "kubernetes" && inClusterKubeSource() ? { kube: inClusterKubeSource()! } : {}),
        // Leaving the plugin in place on exit keeps new ambient pods from starting unprotected
        // while the agent is away (they fail and are retried); uninstalling is a separate step.
        isUpgrade: () => true,
        onReconcile: (r) => {
          this.installState = r.conflist.action === "wait" ? `CNI plugin not chained yet: ${r.conflist.reason}` : "";
        },
      });
      const report = await this.installer.start();
      this.installState = report.conflist.action === "wait" ? `CNI plugin not chained yet: ${report.conflist.reason}` : "";
    }
    this.verifier.start();
    this.updatePodGauge();
    this.log.info({ mode: this.source.kind, enrolled: this.lifecycle.uids().length, zds: c.zdsSocket, http: this.health.port }, "node agent running");
  }

  /** Drops ipset members of pods that left while the agent was away (after the first pass). */
  private async pruneProbeSet(): Promise<void> {
    if (!this.probeSnat) return;
    const keep = new Set(this.lifecycle.all().flatMap((p) => p.ips));
    const stale = (await this.probeSnat.members()).filter((ip) => !keep.has(ip));
    if (stale.length === 0) return;
    await this.probeSnat.removePod(stale);
    this.log.info({ removed: stale }, "removed probe ipset entries of pods no longer enrolled");
  }

  private updatePodGauge(): void {
    const all = this.lifecycle.all();
    this.metrics.enrolledPods.set({ state: "enabled" }, all.filter((p) => p.state === "enabled").length);
    this.metrics.enrolledPods.set({ state: "pending" }, all.filter((p) => p.state === "pending").length);
  }

  /**
   * Clean shutdown: stop taking events, close the sockets; pods keep their rules and ztunnel
   * keeps serving them (a restarted agent picks them up again).
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const step = async (what: string, fn: () => Promise<void> | void): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        this.log.warn({ step: what, err: errorMessage(err) }, "shutdown step failed");
      }
    };
    await step("verifier", () => this.verifier.stop());
    await step("installer", () => this.installer?.stop());
    await step("plugin events", () => this.plugin?.close());
    await step("enrollment", () => this.controller.stop());
    await step("zds", () => this.zds?.close());
    this.lifecycle.closeAll();
    this.hostNetns?.close();
    await step("http", () => this.health?.close());
    this.log.info("node agent stopped");
  }
}
