import { RedirectReadbackError } from "./errors.js";
import { diffLines } from "./iptables-save.js";
import { families, readFamilyState, replaceInput, restore, type RedirectContext } from "./state.js";
import { mustRun } from "./runner.js";

export interface ApplyResult {
  outcome: "applied" | "unchanged";
  /** What was changed, e.g. "ipv4 iptables", "ipv6 route". */
  changes: string[];
}

/**
 * Idempotent apply: compares the normalised installed rules with the expected ones and only
 * when they differ replaces ours in one restore transaction; adds the ip rule and route only
 * when absent.
 */
export async function applyRedirect(ctx: RedirectContext): Promise<ApplyResult> {
  const changes: string[] = [];
  for (const family of families(ctx.options)) {
    const state = await readFamilyState(ctx, family);
    if (diffLines(state.expected, state.current).length > 0) {
      await restore(ctx, family, replaceInput(state.tables, state.expectedSet));
      changes.push(`ipv${family} iptables`);
      // Read back: if the backend prints our rules differently than we normalise them, every
      // apply would rewrite them; better to fail loudly once.
      const after = await readFamilyState(ctx, family);
      const diff = diffLines(after.expected, after.current);
      if (diff.length > 0) throw new RedirectReadbackError(ctx.runner.where, diff);
    }
    if (state.ruleCount === 0) {
      await mustRun(ctx.runner, "ip", state.plan.ruleAdd);
      changes.push(`ipv${family} rule`);
    }
    if (state.plan.routeAdd && !state.routePresent) {
      await mustRun(ctx.runner, "ip", state.plan.routeAdd);
      changes.push(`ipv${family} route`);
    }
  }
  return { outcome: changes.length > 0 ? "applied" : "unchanged", changes };
}
