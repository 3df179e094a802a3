import { errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/log.js";
import type { AuthorizationContext, Authorizer } from "../proxy/hbone-server.js";
import { AuthzEngine } from "./engine.js";
import type { AuthzDecision, ConnectionInfo, DestinationWorkload } from "./types.js";

// The seam between the engine and the data path: implements the HBONE server's `Authorizer`
// (15008) and offers the same check for plaintext inbound (15006, no peer identity). It follows
// the current policy set by reference — a new array (a new state snapshot) is compiled once —
// and fails closed if that set does not compile.

export interface PolicyAuthorizerOptions {
  /** The current policies (e.g. `() => store.state.policies`); compiled when the array changes. */
  readonly policies: () => unknown;
  /** The destination workload of a destination IP (e.g. `(ip) => store.workloadByIp(ip)`). */
  readonly workload: (ip: string) => DestinationWorkload | undefined;
  /** Dry-run outcomes at info; decisions at debug. */
  readonly log?: Logger;
}

export const UNKNOWN_DESTINATION: AuthzDecision = Object.freeze({ allow: false, policy: undefined, reason: "destination workload not found" });

export class PolicyAuthorizer implements Authorizer {
  private source: unknown = Symbol("none");
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
  check(conn: Omit<ConnectionInfo, "destination"> & { readonly destination?: DestinationWorkload }): AuthzDecision {
    const destination = conn.destination ?? this.opts.workload(conn.destinationIp);
    if (destination === undefined) return UNKNOWN_DESTINATION;
    const engine = this.engine();
    if (!(engine instanceof AuthzEngine)) return engine;
    const info: ConnectionInfo = conn.destination === undefined ? { ...conn, destination } : (conn as ConnectionInfo);
    const decision = engine.evaluate(info);
    const log = this.opts.log;
    if (log !== undefined) {
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
    return decision;
  }
}
