import { hex, type RedirectOptions } from "./options.js";
import type { IpFamily } from "./rules.js";

// Policy routing for connmark'ed return traffic: `ip rule fwmark <connmark> pref <prio> lookup
// <table>` and a local default route in that table, so those packets are delivered to ztunnel's
// transparent sockets inside the pod instead of leaving it.

export interface IpPlan {
  family: IpFamily;
  /** `ip` arguments adding the rule. */
  ruleAdd: string[];
  ruleDel: string[];
  /** `ip` arguments adding the route; absent for IPv6 when lo has IPv6 disabled. */
  routeAdd?: string[];
  routeDel?: string[];
}

export function ipPlan(family: IpFamily, o: RedirectOptions, opts: { loIpv6Disabled?: boolean } = {}): IpPlan {
  const f = family === 4 ? "-4" : "-6";
  const sel = ["fwmark", `${hex(o.connmark)}/${hex(o.connmarkMask)}`, "pref", String(o.rulePriority), "lookup", String(o.routeTable)];
  const plan: IpPlan = { family, ruleAdd: [f, "rule", "add", ...sel], ruleDel: [f, "rule", "del", ...sel] };
  if (family === 6 && opts.loIpv6Disabled) return plan;
  const route = ["local", family === 4 ? "0.0.0.0/0" : "::/0", "dev", "lo", "table", String(o.routeTable)];
  plan.routeAdd = [f, "route", "add", ...route];
  plan.routeDel = [f, "route", "del", ...route];
  return plan;
}

/** The plan as shell-like lines (for golden files and logs). */
export function renderIpPlan(plan: IpPlan): string {
  return [plan.ruleAdd, plan.routeAdd].filter((a): a is string[] => a !== undefined).map((a) => `ip ${a.join(" ")}`).join("\n") + "\n";
}
