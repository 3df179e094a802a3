import { errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/log.js";
import type { AuthorizationContext, Authorizer } from "../proxy/hbone-server.js";
import { AuthzEngine, recheck, type RecheckResult } from "./engine.js";
import type { AuthzDecision, AuthzPolicy, ConnectionInfo, DestinationWorkload } from "./types.js";

// The seam between the engine and the data path: implements the HBONE server's `Authorizer`
// (15008), offers the same check for plaintext inbound (15006, no peer identity), and the
// re-check of open connections after a state change. It follows the current policy set by
// reference — a new array (a new state snapshot) is compiled once — and fails closed if that
// set does not compile.

export interface PolicyAuthorizerOptions {
  /** The current policies (e.g. `() => store.state.policies`); compiled when the array changes. */
  readonly policies: () => readonly AuthzPolicy[];
  /** The destination workload of a destination IP (e.g. `(ip) => store.workloadByIp(ip)`). */
  readonly workload: (ip: string) => DestinationWorkload | undefined;
  /** Dry-run outcomes at info; decisions at debug. */
  readonly log?: Logger;
}

export const UNKNOWN_DESTINATION: AuthzDecision = Object.freeze({ allow: false, policy: undefined, reason: "destination workload not found" });

/** What a re-check needs of an open connection: what its first check saw. */
export type CheckInput = Omit<ConnectionInfo, "destination"> & { readonly destination?: DestinationWorkload };

export class PolicyAuthorizer implements Authorizer {
  private source: readonly AuthzPolicy[] | undefined;
  private current: AuthzEngine | AuthzDecision = new AuthzEngine([]);

  constructor(private readonly opts: PolicyAuthorizerOptions) {}

  /** The engine for the current policies; a deny-all decision if they do not compile. */
  engine(): AuthzEngine | AuthzDecision {
    const policies = this.opts.policies();
    if (policies !== this.source) {
      this.source = policies;
      try {
        this.current = AuthzEngine.compile(policies);
      } catch (err) {
        const reason = `authorization policies are invalid, denying all: ${errorMessage(err)}`;
        this.opts.log?.error({ err: errorMessage(err) }, "authorization policies rejected; every connection is denied until they are fixed");
        this.current = Object.freeze({ allow: false, policy: undefined, reason });
      }
    }
    return this.current;
  }

  /** HBONE (15008): the peer identity comes from the verified client certificate. */
  authorize(ctx: AuthorizationContext): AuthzDecision {
    return this.check({
      sourceIdentity: ctx.source,
      sourceIp: ctx.sourceIp,
      destinationIp: ctx.destination.ip,
      destinationPort: ctx.destination.port,
    });
  }

  /** Any connection; `sourceIdentity` undefined for plaintext (15006). */
  check(conn: CheckInput): AuthzDecision {
    const info = this.info(conn);
    if (info === undefined) return UNKNOWN_DESTINATION;
    const engine = this.engine();
    if (!(engine instanceof AuthzEngine)) return engine;
    const decision = engine.evaluate(info);
    this.logDecision(conn, decision);
    return decision;
  }

  /**
   * After a state change: the open connections (with what their first check saw) that the
   * current policies deny — the engine's own recheck. A destination that vanished is denied.
   */
  recheck<C>(connections: Iterable<C>, input: (c: C) => CheckInput): RecheckResult<C>[] {
    const engine = this.engine();
    const all = [...connections];
    if (!(engine instanceof AuthzEngine)) return all.map((connection) => ({ connection, decision: engine }));
    const gone: RecheckResult<C>[] = [];
    const denied = recheck(engine, all, (c) => {
      const info = this.info(input(c));
      if (info === undefined) gone.push({ connection: c, decision: UNKNOWN_DESTINATION });
      return info;
    });
    return [...gone, ...denied];
  }

  private info(conn: CheckInput): ConnectionInfo | undefined {
    if (conn.destination !== undefined) return conn as ConnectionInfo;
    const destination = this.opts.workload(conn.destinationIp);
    return destination === undefined ? undefined : { ...conn, destination };
  }

  private logDecision(conn: CheckInput, decision: AuthzDecision): void {
    const log = this.opts.log;
    if (log === undefined) return;
    if (decision.dryRun !== undefined && log.isLevelEnabled("info")) {
      log.info(
        {
          src: conn.sourceIp,
          dst: `${conn.destinationIp}:${conn.destinationPort}`,
          allow: decision.allow,
          dryRunAllow: decision.dryRun.allow,
          dryRunPolicy: decision.dryRun.policy,
          dryRunReason: decision.dryRun.reason,
        },
        "dry-run authorization result",
      );
    } else if (log.isLevelEnabled("debug")) {
      log.debug({ src: conn.sourceIp, dst: `${conn.destinationIp}:${conn.destinationPort}`, allow: decision.allow, policy: decision.policy, reason: decision.reason }, "authorization decision");
    }
  }
}
