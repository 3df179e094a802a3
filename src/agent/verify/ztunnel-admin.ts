import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import type { ZtunnelView } from "./verifier.js";

interface PodState {
  state?: unknown;
  listeners?: unknown;
}

interface Dump {
  zds?: { connected?: unknown };
  workloadState?: Record<string, PodState>;
}

/**
 * What ztunnel reports about a pod, from its admin /config_dump (`workloadState[uid]` with
 * `state` and `listeners`, src/ztunnel/admin/config-dump.ts). One fetch serves a whole verifier
 * pass (cached for `cacheMs`). Anything uncertain — ztunnel unreachable, not connected to us,
 * the pod still starting — is "cannot tell", so the verifier never re-sends Adds on a guess.
 */
export class AdminZtunnelView implements ZtunnelView {
  private cached: { at: number; dump: Dump | undefined } | undefined;

  constructor(
    private readonly baseUrl: string,
    private readonly opts: { cacheMs?: number; timeoutMs?: number; log?: Logger } = {},
  ) {}

  async hasPod(uid: string): Promise<boolean | undefined> {
    const dump = await this.dump();
    if (!dump || dump.zds?.connected !== true || typeof dump.workloadState !== "object" || dump.workloadState === null) return undefined;
    const s = dump.workloadState[uid];
    if (s === undefined) return false;
    if (s.state === "Up") return Array.isArray(s.listeners) && s.listeners.length > 0 ? true : false;
    if (s.state === "Failed") return false;
    return undefined; // Pending: ztunnel is on it
  }

  private async dump(): Promise<Dump | undefined> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < (this.opts.cacheMs ?? 1000)) return this.cached.dump;
    let dump: Dump | undefined;
    try {
      const res = await fetch(new URL("/config_dump", this.baseUrl), { signal: AbortSignal.timeout(this.opts.timeoutMs ?? 2000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      dump = (await res.json()) as Dump;
    } catch (err) {
      (this.opts.log ?? logger("ztunnel-view")).debug({ url: this.baseUrl, err: errorMessage(err) }, "ztunnel admin not readable; skipping its check");
      dump = undefined;
    }
    this.cached = { at: now, dump };
    return dump;
  }
}
