import { errorMessage } from "../../src/shared/errors.js";
import type { PodApps } from "../../src/demo/apps.js";
import { podKey } from "../../src/demo/layout.js";
import type { RunPod } from "../../src/demo/run.js";

// The soak's traffic: loops of connections between enrolled pods (short ones of 1 KiB, a few
// long transfers), each connection judged by the receiving app's answer. A connection that
// fails is acceptable only when a Deny policy covering its flow may have been in force while it
// ran (policy reloads reach the two ztunnels at slightly different times, hence the grace).

export interface Flow {
  from: RunPod;
  to: RunPod;
  bytes: number;
  kind: "short" | "long";
  /** The soak's Deny policy covers this flow when it is on. */
  policyTarget: boolean;
}

export interface FlowResult {
  flow: string;
  kind: "short" | "long";
  ok: number;
  /** Failed while the Deny policy covering the flow may have been in force. */
  denied: number;
  /** Failed with no policy to explain it: the soak's failure figure. */
  failed: number;
  /** The first few unexplained failures, for the report. */
  failures: string[];
}

/** When the soak's Deny policy was written on and off; `mayDeny` answers for one connection's lifetime. */
export class PolicyTimeline {
  private readonly changes: Array<{ at: number; on: boolean }> = [];

  constructor(private readonly graceMs: number) {}

  set(on: boolean, at = Date.now()): void {
    this.changes.push({ at, on });
  }

  get on(): boolean {
    return this.changes.at(-1)?.on ?? false;
  }

  /** True when the policy was on at some moment of [start - grace, end]. */
  mayDeny(start: number, end: number): boolean {
    const from = start - this.graceMs;
    let on = false;
    for (const c of this.changes) {
      if (c.at <= from) {
        on = c.on;
        continue;
      }
      if (c.at > end) break;
      if (c.on) return true;
    }
    return on;
  }
}

const MAX_FAILURES_KEPT = 20;

export class TrafficLoops {
  private stopped = false;
  private readonly running: Array<Promise<void>> = [];
  readonly results: FlowResult[] = [];

  constructor(
    private readonly apps: PodApps,
    private readonly policy: PolicyTimeline,
  ) {}

  start(flow: Flow): void {
    const r: FlowResult = { flow: `${flow.from.name} → ${flow.to.name}`, kind: flow.kind, ok: 0, denied: 0, failed: 0, failures: [] };
    this.results.push(r);
    this.running.push(this.loop(flow, r));
  }

  private async loop(flow: Flow, r: FlowResult): Promise<void> {
    const expect = `${podKey(flow.to)} received ${flow.bytes} bytes`;
    const timeoutMs = flow.kind === "long" ? 120_000 : 10_000;
    while (!this.stopped) {
      const start = Date.now();
      let why: string | undefined;
      try {
        const t = await this.apps.transfer(flow.from.netnsPath, flow.from.name, flow.to.name, flow.to.ip, flow.bytes, { timeoutMs });
        if (!t.reply.startsWith(expect)) why = t.reply === "" ? "closed with no answer" : `unexpected answer: ${t.reply}`;
      } catch (err) {
        why = errorMessage(err);
      }
      if (why === undefined) r.ok++;
      else if (flow.policyTarget && this.policy.mayDeny(start, Date.now())) r.denied++;
      else {
        r.failed++;
        if (r.failures.length < MAX_FAILURES_KEPT) r.failures.push(`${new Date(start).toISOString()} ${r.flow}: ${why}`);
        // A failing path should not spin: one attempt per 100 ms at most.
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  }

  /** Stops the loops after their current connection (each bounded by its timeout). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.running);
  }
}
