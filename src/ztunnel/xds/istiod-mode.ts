import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Registry } from "prom-client";
import type { Logger } from "../../shared/log.js";
import type { NetnsHandle } from "../../native/index.js";
import type { WorkloadProxyManager } from "../../zds/index.js";
import type { StateSink } from "../state/store.js";
import type { CertIssuer } from "../tls/cert-manager.js";
import type { IstiodConfig } from "./config.js";
import { nodeId } from "./config.js";
import { callMetadata, channelFor, TokenFile } from "./credentials.js";
import { DeltaXdsClient } from "./delta-client.js";
import { XdsError } from "./errors.js";
import { IstiodCa } from "./istiod-ca.js";
import { registerBuildInfo, XdsMetrics } from "./metrics.js";
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, protoDir, xdsTypes } from "./proto.js";
import { stringStruct } from "./struct.js";
import { XdsResources, XdsStateSource } from "./xds-source.js";

// istiod mode assembled (DESIGN §10 "Kubernetes/Istio mode"): the delta xDS stream feeds the
// store, istiod's CA signs, and a pod is served only after the first full sync (fail closed).

export interface IstiodModeOptions {
  readonly log: Logger;
  /** How long a ZDS Add waits for the first full sync before it is refused (and retried by ZDS). */
  readonly syncWaitMs?: number;
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number };
  readonly version?: string;
}

export interface IstiodMode {
  readonly source: XdsStateSource;
  readonly issuer: CertIssuer;
  gate(manager: WorkloadProxyManager<NetnsHandle>): WorkloadProxyManager<NetnsHandle>;
  notReady(): string[];
  dump(): Record<string, unknown>;
  registerMetrics(registry: Registry): void;
  close(): Promise<void>;
}

export function istiodMode(config: IstiodConfig, opts: IstiodModeOptions): IstiodMode {
  xdsTypes(); // schemas load now: a broken installation stops start-up, not the first message
  const token = new TokenFile(config.tokenPath);
  // Read once now: a missing token is a start-up error that names the file.
  token.read();
  const channel = channelFor(config.xds);
  const metrics = new XdsMetrics();
  const ca = new IstiodCa({ config, log: opts.log });
  let resources: XdsResources | undefined;
  let client: DeltaXdsClient | undefined;
  const id = nodeId(config);
  const meta: Record<string, string> = { ...config.meta, CLUSTER_ID: config.clusterId, ...(config.nodeName !== undefined ? { NODE_NAME: config.nodeName } : {}) };
  const begin = (sink: StateSink): void => {
    resources = new XdsResources(sink, `istiod:${config.xds.url}`, opts.log);
    client = new DeltaXdsClient({
      target: config.xds.target,
      channel,
      metadata: () => callMetadata(token, config.clusterId, config.xds.headers),
      node: { id, cluster: config.clusterId, metadata: stringStruct(meta) },
      typeUrls: [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL],
      handler: resources,
      log: opts.log,
      metrics,
      tokenPath: config.tokenPath,
      ...(opts.backoff !== undefined ? { backoff: opts.backoff } : {}),
    });
    client.start();
  };
  const source = new XdsStateSource(`istiod:${config.xds.url}`, begin, () => client?.close());
  const waiting = (): string => {
    const s = client?.status();
    const missing = [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL].filter((t) => !(s?.synced ?? []).includes(t)).map((t) => t.split(".").at(-1));
    return `waiting for the first xDS sync from ${config.xds.url} (${missing.join(", ")} not received)${s?.lastError !== undefined ? `: ${s.lastError}` : ""}`;
  };
  const syncWaitMs = opts.syncWaitMs ?? 5_000;
  return {
    source,
    issuer: ca,
    gate: (manager) => ({
      async start(uid, info, netns): Promise<void> {
        if (client === undefined) throw new XdsError("XDS_STREAM", "the xDS client has not started");
        if (!client.ready) {
          let timer: NodeJS.Timeout | undefined;
          const timedOut = new Promise<false>((r) => (timer = setTimeout(() => r(false), syncWaitMs)));
          const ok = await Promise.race([client.whenSynced().then(() => true), timedOut]);
          clearTimeout(timer);
          if (!ok) throw new XdsError("XDS_STREAM", `pod ${info.namespace}/${info.name} not served yet: ${waiting()}`);
        }
        await manager.start(uid, info, netns);
      },
      stop: (uid) => manager.stop(uid),
    }),
    notReady: () => (client?.ready === true ? [] : [waiting()]),
    dump: () => ({
      xds: { address: config.xds.url, ca: config.ca.url, nodeId: id, clusterId: config.clusterId, tokenPath: config.tokenPath, ...client?.status() },
      ...(resources?.report() ?? { ignored: {}, rejected: {} }),
    }),
    registerMetrics: (registry) => {
      metrics.register(registry);
      registerBuildInfo(registry, opts.version ?? packageVersion());
    },
    close: async () => {
      client?.close();
      ca.close();
    },
  };
}

/** The installation's package version (package.json next to proto/), for istio_build. */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(dirname(protoDir()), "package.json"), "utf8")) as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}
