#!/usr/bin/env -S node --single-threaded-gc
import type { Server } from "node:http";
import { errorMessage } from "../shared/errors.js";
import type { LevelWithSilent } from "pino";
import { missingNodeFlags } from "./node-flags.js";
import { logger, rootLogger } from "../shared/log.js";
import { AccessLog, accessLogger } from "./accesslog/access-log.js";
import { readKernelSockets } from "./admin/kernel-sockets.js";
import { ZtunnelMetrics } from "./metrics/registry.js";
import { createZdsClient } from "../zds/index.js";
import { istiodReason, selectMeshSource } from "./cluster/select.js";
import { buildConfigDump } from "./admin/config-dump.js";
import { pendingPods, podState } from "./inpod/pod-status.js";
import { startAdminServer, startMetricsServer, startReadinessServer } from "./admin/server.js";
import { ConfigError, loadConfig, unknownVariables, ztunnelHelp, type ZtunnelConfig } from "./config.js";
import { InPodManager } from "./inpod/manager.js";
import { enableMigrateReq } from "./inpod/migrate-req.js";
import { TelemetrySink } from "./inpod/telemetry-sink.js";
import { WorkerPool } from "./inpod/worker-pool.js";
import { fdBudget, readPipeSoftPages } from "./proxy/budget.js";
import { tuneHeap } from "./proxy/heap-tuning.js";
import { raiseNofile } from "./proxy/rlimit.js";
import { Readiness } from "./readiness.js";
import { WorkloadStore } from "./state/store.js";
import { DnsMetrics } from "./dns/metrics.js";
import { dnsSettingsFrom } from "./dns/settings.js";
import { formatUpstream } from "./dns/transport.js";
import { LocalCa } from "./tls/ca.js";
import { CertManager } from "./tls/cert-manager.js";

// The ztunnel process (DESIGN §1): the main thread runs the ZDS client, the state, the
// certificates and the admin endpoints; ZTUNNEL_WORKER_THREADS workers run the proxies.

// The composition root: the one root logger of the main thread; components get children.
const root = rootLogger();
const log = root.child({ scope: "ztunnel" });

const LEVELS: ReadonlySet<string> = new Set(["trace", "debug", "info", "warn", "error", "fatal", "silent"]);

/** Debug endpoints (crash a worker on purpose) are off unless this is "true". */
const DEBUG_ENV = "ZTUNNEL_DEBUG_ENDPOINTS";

async function run(config: ZtunnelConfig): Promise<void> {
  // istiod signs in istiod mode: no local root is needed (or read) then.
  const istiod = istiodReason(config) !== undefined;
  if (!istiod && config.caRootDir === undefined) {
    throw new ConfigError("CA_ROOT_DIR", "is required: a directory with root-cert.pem and ca-key.pem (the mesh root every node shares)");
  }
  if (!config.inpodPortReuse && config.workerThreads > 1) {
    // Every worker binds its own listener on each pod port; without SO_REUSEPORT the second fails.
    throw new ConfigError("INPOD_PORT_REUSE", `false needs ZTUNNEL_WORKER_THREADS=1 (it is ${config.workerThreads}): each worker binds its own listener on every pod port`);
  }
  const ca = istiod || config.caRootDir === undefined ? undefined : await LocalCa.fromDir(config.caRootDir, { generate: config.caRootGenerate, trustDomain: config.trustDomain });
  // After the CA, so a missing root is reported before a missing state source.
  const mesh = await selectMeshSource(config, process.env, { log: logger("ztunnel.source", root) });
  const certs = new CertManager(mesh.issuer(ca), undefined, logger("ztunnel.certs", root));
  const store = new WorkloadStore(Math.random, logger("ztunnel.state", root));
  const dns = await dnsSettingsFrom(config);
  if (dns !== undefined) log.info({ upstreams: dns.upstreams.map(formatUpstream), clusterDomain: dns.clusterDomain }, "DNS proxy on 15053 in every enrolled pod");
  const missing = missingNodeFlags();
  // Still correct without them, only costlier per byte: say so instead of running silently slower.
  if (missing.length > 0) log.warn({ missing }, "node started without ztunnel's flags; run /usr/local/bin/ztunnel (its shebang adds them) or node with them before main.js");
  const nofile = raiseNofile();
  if (nofile.error !== undefined) log.warn({ err: nofile.error, soft: nofile.limit.soft, hard: nofile.limit.hard }, "cannot raise the fd limit to the hard limit; budgeting from the soft one");
  const fds = fdBudget(Number.isFinite(nofile.limit.soft) ? nofile.limit.soft : 1_048_576, config.workerThreads, readPipeSoftPages());
  log.info({ fdLimit: fds.limit, reserve: fds.reserve, perWorkerFds: fds.perWorkerFds, perWorkerConnections: fds.perWorkerConnections, perWorkerHandshakes: fds.perWorkerHandshakes, perWorkerPipePages: fds.perWorkerPipePages }, "file descriptor budget");

  tuneHeap();
  const pool = new WorkerPool({
    script: new URL("./worker/entry.js", import.meta.url),
    count: config.workerThreads,
    settings: {
      clusterId: config.clusterId,
      packetMark: config.packetMark,
      reusePort: config.inpodPortReuse,
      ipv6: config.ipv6Enabled,
      poolMaxStreams: config.poolMaxStreamsPerConnection,
      poolIdleMs: config.poolUnusedReleaseTimeoutMs,
      plaintextRelay: config.plaintextRelay,
      flushIntervalMs: 1_000,
      ...(dns !== undefined ? { dns } : {}),
      fdBudget: fds,
    },
    snapshot: () => store.snapshot(),
    log,
  });
  // Every state change reaches every worker as a versioned snapshot.
  store.onChange(() => pool.broadcast({ t: "state", snapshot: store.snapshot() }));
  // Workers boot (a module graph each) while the state loads; they get the state when it is
  // there (the broadcast above, or the snapshot sent at their ready). No pod is added before
  // both are done: ZDS starts below.
  const poolUp = pool.start();
  poolUp.catch(() => undefined);
  await mesh.source.start(store);
  await poolUp;
  const metrics = new ZtunnelMetrics({ defaultMetrics: true });
  mesh.registerMetrics?.(metrics.registry);
  const telemetry = new TelemetrySink(metrics, new AccessLog(accessLogger()));
  const dnsMetrics = new DnsMetrics(metrics.registry);
  pool.on("telemetry", (index, t) => {
    telemetry.add(index, t);
    if (t.dns !== undefined) dnsMetrics.apply(t.dns);
  });

  const manager = new InPodManager({ pool, store, certs, log, trustDomain: config.trustDomain, counters: metrics, prepareNetns: enableMigrateReq() });
  store.onChange(() => void manager.refresh());
  const zds = createZdsClient(mesh.gate(manager), { socketPath: config.inpodUds, log: logger("zds-client", root) });
  let draining = false;

  const readiness = new Readiness();
  readiness.register("shutdown", () => (draining ? ["draining connections"] : []));
  readiness.register("workers", () =>
    pool.statuses().filter((w) => w.state !== "up").map((w) => `worker ${w.index} ${w.state}${w.lastExit !== undefined ? ` (${w.lastExit})` : ""}`),
  );
  readiness.register("workload proxy manager", () => pendingPods(zds.readiness(), zds.workloads()));

  readiness.register("state source", () => mesh.notReady());

  const servers: Server[] = [];
  let shutdown: Promise<void> | undefined;
  const quit = (): void => {
    shutdown ??= (async () => {
      draining = true;
      const deadlineMs = config.connectionTerminationDeadlineMs;
      log.info({ deadlineMs }, "draining: listeners closed, open connections may finish until the deadline");
      await Promise.all([...Array(pool.size).keys()].map((i) => pool.request(i, { t: "drain", deadlineMs })));
      manager.markShutdown();
      await zds.close();
      await pool.stop();
      await mesh.close();
      certs.close();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
      log.info("ztunnel stopped");
    })().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: errorMessage(err) }, "shutdown failed");
        process.exit(1);
      },
    );
  };

  servers.push(await startReadinessServer(config.readinessAddr, readiness, log));
  // Proxy gauges are read at scrape time from the manager (no bookkeeping to drift).
  const scrape = {
    contentType: metrics.contentType,
    metrics: async (): Promise<string> => {
      const { running, pending } = zds.counts();
      metrics.setProxyCounts(running, pending);
      return await metrics.metrics();
    },
  };
  servers.push(await startMetricsServer(config.statsAddr, scrape, log));
  servers.push(
    await startAdminServer(
      config.adminAddr,
      {
        configDump: async () =>
          buildConfigDump({
            connections: await pool.openConnections(),
            config,
            store,
            certs,
            zdsConnected: zds.connected,
            zdsWorkloads: zds.workloads(),
            pods: manager.placements(),
            workers: pool.statuses(),
            counters: telemetry.totals,
            draining,
            source: { mode: mesh.mode, reason: mesh.reason, name: mesh.source.name, ...(mesh.dump?.() ?? {}) },
          }),
        quit,
        setLogLevel: (level) => {
          if (!LEVELS.has(level)) throw new Error(`unknown level "${level}": use one of ${[...LEVELS].join(", ")}`);
          root.level = level as LevelWithSilent;
          pool.setLogLevel(level);
          log.warn({ level }, "log level changed");
          return root.level;
        },
        currentLogLevel: () => root.level,
        listeners: async (namespace, name) => {
          const pod = manager.podNetnsFd(namespace, name);
          if (pod === undefined) return undefined;
          const placement = manager.placement(pod.uid);
          const status = zds.workload(pod.uid);
          const open = (await pool.openConnections())[pod.uid] ?? [];
          const kernel = await readKernelSockets(pod.fd).catch((err: unknown) => ({ error: errorMessage(err) }));
          return { pod: `${namespace}/${name}`, uid: pod.uid, ztunnel: { state: status === undefined ? undefined : podState(status), listeners: placement?.listeners ?? [], connections: open }, kernel };
        },
        ...(process.env[DEBUG_ENV] === "true" ? { crashWorker: (i: number) => pool.crash(i) } : {}),
      },
      log,
    ),
  );
  process.on("SIGTERM", quit);
  process.on("SIGINT", quit);
  zds.start();
  log.info({ workers: pool.size, zds: config.inpodUds, state: mesh.source.name, stateReason: mesh.reason }, "ztunnel started");
}

if (process.argv.includes("--help") || process.argv.includes("-h")) {
  process.stdout.write(ztunnelHelp());
  process.exit(0);
}

try {
  const config = loadConfig();
  const unknown = unknownVariables();
  if (unknown.length > 0) log.warn({ variables: unknown }, "environment variables that look like ztunnel's are not read by it (see ztunnel --help)");
  await run(config);
} catch (err) {
  // One line a human can act on; the variable is named in ConfigError messages.
  process.stderr.write(`ztunnel: ${errorMessage(err)}\n`);
  log.error({ err: errorMessage(err), code: (err as { code?: string }).code }, "ztunnel failed to start");
  process.exit(1);
}
