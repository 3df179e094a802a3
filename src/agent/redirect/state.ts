import { iptablesBinaries, type IptablesVariant } from "./iptables-binary.js";
import { canonicalLines, parseSave, type OurTableState } from "./iptables-save.js";
import { ipPlan, type IpPlan } from "./ip-plan.js";
import { hex, type RedirectOptions } from "./options.js";
import { generateRules, ruleLine, type IpFamily, type RuleSet } from "./rules.js";
import { RedirectCommandError } from "./errors.js";
import { commandLine, mustRun, type CommandRunner } from "./runner.js";

// What is installed in one netns for one family, next to what should be.

export interface FamilyState {
  family: IpFamily;
  /** Our chains, jumps and rules as found. */
  tables: OurTableState[];
  current: string[];
  expected: string[];
  expectedSet: RuleSet;
  /** How many copies of our ip rule exist. */
  ruleCount: number;
  routePresent: boolean;
  plan: IpPlan;
}

export interface RedirectContext {
  runner: CommandRunner;
  options: RedirectOptions;
  variant: IptablesVariant;
}

interface IpRuleJson {
  priority?: number;
  fwmark?: string;
  fwmask?: string;
  table?: string;
}

interface IpRouteJson {
  type?: string;
  dst?: string;
  dev?: string;
}

export function families(o: RedirectOptions): IpFamily[] {
  return o.ipv6 ? [4, 6] : [4];
}

/** `ip -j ...` output; an empty or absent routing table reads as an empty list. */
async function ipJson<T>(runner: CommandRunner, args: string[]): Promise<T[]> {
  const res = await runner.run("ip", ["-j", ...args]);
  if (res.code !== 0 && /FIB table does not exist/.test(res.stderr)) return [];
  if (res.code !== 0) throw new RedirectCommandError(runner.where, commandLine("ip", ["-j", ...args]), res.code, res.stderr);
  const text = res.stdout.trim();
  if (text === "") return [];
  return JSON.parse(text) as T[];
}

async function loIpv6Disabled(runner: CommandRunner): Promise<boolean> {
  // /proc/sys/net resolves against the reader's netns, so this reads the pod's own value.
  const res = await runner.run("cat", ["/proc/sys/net/ipv6/conf/lo/disable_ipv6"]);
  return res.code !== 0 || res.stdout.trim() === "1";
}

export async function readFamilyState(ctx: RedirectContext, family: IpFamily): Promise<FamilyState> {
  const { runner, options: o } = ctx;
  const bin = iptablesBinaries(ctx.variant, family);
  const save = await mustRun(runner, bin.save, []);
  const tables = parseSave(save.stdout);
  const expectedSet = generateRules(family, o);
  const f = family === 4 ? "-4" : "-6";
  const rules = await ipJson<IpRuleJson>(runner, [f, "rule", "show"]);
  const ruleCount = rules.filter(
    (r) =>
      r.priority === o.rulePriority &&
      r.fwmark === hex(o.connmark) &&
      (r.fwmask ?? "0xffffffff") === hex(o.connmarkMask) &&
      r.table === String(o.routeTable),
  ).length;
  const plan = ipPlan(family, o, { loIpv6Disabled: family === 6 ? await loIpv6Disabled(runner) : false });
  let routePresent = false;
  if (plan.routeAdd) {
    const routes = await ipJson<IpRouteJson>(runner, [f, "route", "show", "table", String(o.routeTable)]);
    routePresent = routes.some((r) => r.type === "local" && r.dst === "default" && r.dev === "lo");
  }
  return {
    family,
    tables,
    current: canonicalLines(tables, family),
    expected: canonicalLines(expectedSet.tables, family),
    expectedSet,
    ruleCount,
    routePresent,
    plan,
  };
}

/**
 * One iptables-restore --noflush transaction that removes what is ours (exact jumps as found,
 * our chains) and, when `desired` is given, installs it. Atomic: there is no moment without rules.
 */
export function replaceInput(current: readonly OurTableState[], desired: RuleSet | undefined): string {
  const names = new Set([...current.map((t) => t.table), ...(desired?.tables.map((t) => t.table) ?? [])]);
  const lines: string[] = [];
  for (const name of names) {
    const cur = current.find((t) => t.table === name);
    const want = desired?.tables.find((t) => t.table === name);
    lines.push(`*${name}`);
    for (const j of cur?.jumps ?? []) lines.push(ruleLine("-D", j));
    // Declaring a chain creates it, or flushes it when it exists (also with --noflush).
    for (const c of want?.chains ?? []) lines.push(`:${c} - [0:0]`);
    const drop = (cur?.chains ?? []).filter((c) => !(want?.chains ?? []).includes(c));
    for (const c of drop) lines.push(`-F ${c}`);
    for (const c of drop) lines.push(`-X ${c}`);
    for (const j of want?.jumps ?? []) lines.push(ruleLine("-A", j));
    for (const r of want?.rules ?? []) lines.push(ruleLine("-A", r));
    lines.push("COMMIT");
  }
  return lines.join("\n") + "\n";
}

export async function restore(ctx: RedirectContext, family: IpFamily, input: string): Promise<void> {
  const bin = iptablesBinaries(ctx.variant, family);
  // -w: the legacy backend shares one lock file across netns; wait rather than fail.
  await mustRun(ctx.runner, bin.restore, ["--noflush", "-w", "5"], input);
}
