import { families, readFamilyState, replaceInput, restore, type RedirectContext } from "./state.js";
import { mustRun } from "./runner.js";

export interface RemoveResult {
  outcome: "removed" | "absent";
  changes: string[];
}

/** Removes our jumps, chains, ip rule and route; whatever is already absent is fine. */
export async function removeRedirect(ctx: RedirectContext): Promise<RemoveResult> {
  const changes: string[] = [];
  for (const family of families(ctx.options)) {
    const state = await readFamilyState(ctx, family);
    if (state.tables.length > 0) {
      await restore(ctx, family, replaceInput(state.tables, undefined));
      changes.push(`ipv${family} iptables`);
    }
    for (let i = 0; i < state.ruleCount; i++) {
      await mustRun(ctx.runner, "ip", state.plan.ruleDel);
      changes.push(`ipv${family} rule`);
    }
    if (state.plan.routeDel && state.routePresent) {
      await mustRun(ctx.runner, "ip", state.plan.routeDel);
      changes.push(`ipv${family} route`);
    }
  }
  return { outcome: changes.length > 0 ? "removed" : "absent", changes };
}
