import { OUR_CHAINS, ruleLine, type IpFamily, type Rule, type RuleSet } from "./rules.js";

// Reading back what is installed: parse iptables-save output, keep only what is ours (our chains,
// their rules, jumps into them), and normalise it so that the same rules compare equal whatever
// the backend prints: counters, comments and implicit `-m tcp`/`-m udp` are dropped, and the
// order in which the backend lists chains does not matter (the order of rules inside one chain does).

const OURS = new Set(OUR_CHAINS);

export interface OurTableState {
  table: string;
  /** Our chains declared in this table. */
  chains: string[];
  /** Rules jumping into our chains from other chains, as printed (used to delete them exactly). */
  jumps: Rule[];
  /** Rules inside our chains, in order, as printed. */
  rules: Rule[];
}

/** Splits a rule line into arguments, honouring the double quotes iptables-save puts around comments. */
export function tokenize(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inQuote = false;
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (inQuote) {
      if (c === "\\" && i + 1 < line.length) cur += line[++i];
      else if (c === '"') inQuote = false;
      else cur += c;
    } else if (c === '"') {
      inQuote = true;
      has = true;
    } else if (/\s/.test(c)) {
      if (has) out.push(cur);
      cur = "";
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

/** Parses iptables-save output (with or without -c) into the parts that are ours, per table. */
export function parseSave(text: string): OurTableState[] {
  const tables: OurTableState[] = [];
  let cur: OurTableState | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      cur = { table: line.slice(1), chains: [], jumps: [], rules: [] };
      tables.push(cur);
      continue;
    }
    if (!cur || line === "COMMIT") continue;
    if (line.startsWith(":")) {
      const name = line.slice(1).split(/\s+/)[0] ?? "";
      if (OURS.has(name)) cur.chains.push(name);
      continue;
    }
    let tokens = tokenize(line);
    if (tokens[0]?.startsWith("[")) tokens = tokens.slice(1); // counters from `iptables-save -c`
    if (tokens[0] !== "-A" || tokens.length < 2) continue;
    const rule: Rule = { chain: tokens[1]!, args: tokens.slice(2) };
    if (OURS.has(rule.chain)) cur.rules.push(rule);
    else if (jumpTarget(rule.args) !== undefined) cur.jumps.push(rule);
  }
  return tables.filter((t) => t.chains.length > 0 || t.jumps.length > 0 || t.rules.length > 0);
}

function jumpTarget(args: string[]): string | undefined {
  for (let i = 0; i < args.length - 1; i++) {
    if ((args[i] === "-j" || args[i] === "-g") && OURS.has(args[i + 1]!)) return args[i + 1];
  }
  return undefined;
}

/** Canonical form of one rule's arguments. */
export function normaliseArgs(args: readonly string[], family: IpFamily): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const next = args[i + 1];
    if (a === "-m" && (next === "tcp" || next === "udp")) {
      i++;
      continue;
    }
    if (a === "-m" && next === "comment") {
      i++;
      continue;
    }
    if (a === "--comment") {
      i++;
      continue;
    }
    if ((a === "-s" || a === "-d") && next !== undefined) {
      out.push(a, next.includes("/") ? next : `${next}/${family === 4 ? 32 : 128}`);
      i++;
      continue;
    }
    out.push(a === "--to-port" ? "--to-ports" : a);
  }
  return out;
}

/**
 * Canonical lines describing our state in one family: chain sets and jump sets sorted, rules in
 * order per chain. Two states are equal exactly when these lines are equal.
 */
export function canonicalLines(tables: readonly OurTableState[] | RuleSet["tables"], family: IpFamily): string[] {
  const lines: string[] = [];
  const sorted = [...tables].sort((a, b) => a.table.localeCompare(b.table));
  for (const t of sorted) {
    const norm = (r: Rule): string => ruleLine("-A", { chain: r.chain, args: normaliseArgs(r.args, family) });
    for (const c of [...t.chains].sort()) lines.push(`${t.table}: chain ${c}`);
    for (const j of t.jumps.map(norm).sort()) lines.push(`${t.table}: ${j}`);
    for (const c of [...new Set(t.rules.map((r) => r.chain))].sort()) {
      for (const r of t.rules.filter((x) => x.chain === c)) lines.push(`${t.table}: ${norm(r)}`);
    }
  }
  return lines;
}

/** Human-readable differences (missing/unexpected lines) between expected and current. */
export function diffLines(expected: readonly string[], current: readonly string[]): string[] {
  const problems: string[] = [];
  const cur = new Set(current);
  const exp = new Set(expected);
  for (const l of expected) if (!cur.has(l)) problems.push(`missing ${l}`);
  for (const l of current) if (!exp.has(l)) problems.push(`unexpected ${l}`);
  if (problems.length === 0 && expected.join("\n") !== current.join("\n")) problems.push("rules are in a different order or duplicated");
  return problems;
}
