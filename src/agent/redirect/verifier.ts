import { diffLines } from "./iptables-save.js";
import { families, readFamilyState, type RedirectContext } from "./state.js";

export type RedirectCheckState = "in-place" | "missing" | "drifted";

export interface RedirectCheck {
  state: RedirectCheckState;
  /** Why it is not in place (empty when in place or entirely missing). */
  problems: string[];
}

/** Compares what is installed with what should be, without changing anything. */
export async function checkRedirect(ctx: RedirectContext): Promise<RedirectCheck> {
  const problems: string[] = [];
  let anythingOurs = false;
  for (const family of families(ctx.options)) {
    const s = await readFamilyState(ctx, family);
    const v = `ipv${family}`;
    if (s.tables.length > 0 || s.ruleCount > 0 || s.routePresent) anythingOurs = true;
    problems.push(...diffLines(s.expected, s.current).map((p) => `${v} ${p}`));
    if (s.ruleCount === 0) problems.push(`${v} missing ip rule: ip ${s.plan.ruleAdd.join(" ")}`);
    if (s.ruleCount > 1) problems.push(`${v} ip rule present ${s.ruleCount} times`);
    if (s.plan.routeAdd && !s.routePresent) problems.push(`${v} missing route: ip ${s.plan.routeAdd.join(" ")}`);
  }
  if (!anythingOurs) return { state: "missing", problems: [] };
  return { state: problems.length === 0 ? "in-place" : "drifted", problems };
}
