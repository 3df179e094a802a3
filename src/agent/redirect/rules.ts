import { hex, type RedirectOptions } from "./options.js";

// Generator of the in-pod rules (DESIGN §7): a pure function of the options and the IP family.
// Rules are written the way iptables-save prints them, so a fresh apply reads back identically.

export type IpFamily = 4 | 6;
export type TableName = "mangle" | "nat" | "raw";

export const CHAIN_PREROUTING = "ISTIO_PRERT";
export const CHAIN_OUTPUT = "ISTIO_OUTPUT";
export const OUR_CHAINS: readonly string[] = [CHAIN_OUTPUT, CHAIN_PREROUTING];

/** One rule: the chain it is appended to and the match/target arguments after `-A <chain>`. */
export interface Rule {
  chain: string;
  args: string[];
}

export interface TableRules {
  table: TableName;
  /** Our chains in this table (created, or flushed if present, by the restore). */
  chains: string[];
  /** Jumps from built-in chains into ours. */
  jumps: Rule[];
  /** Rules inside our chains, in order. */
  rules: Rule[];
}

export interface RuleSet {
  family: IpFamily;
  tables: TableRules[];
}

function words(s: string): string[] {
  return s.split(" ");
}

/** Expected rules for one family. */
export function generateRules(family: IpFamily, o: RedirectOptions): RuleSet {
  const loopback = family === 4 ? "127.0.0.1/32" : "::1/128";
  const probe = family === 4 ? `${o.probeAddress}/32` : `${o.probeAddress6}/128`;
  const mark = `${hex(o.mark)}/${hex(o.markMask)}`;
  const connmark = `${hex(o.connmark)}/${hex(o.connmarkMask)}`;
  const { outbound, inboundPlaintext, inboundHbone, dns } = o.ports;
  const pre = CHAIN_PREROUTING;
  const out = CHAIN_OUTPUT;
  const jumps = (): Rule[] => [
    { chain: "PREROUTING", args: ["-j", pre] },
    { chain: "OUTPUT", args: ["-j", out] },
  ];

  const mangle: TableRules = {
    table: "mangle",
    chains: [out, pre],
    jumps: jumps(),
    rules: [
      // Packets from ztunnel's own sockets (looped back into the pod) tag their connection...
      { chain: pre, args: words(`-m mark --mark ${mark} -j CONNMARK --set-xmark ${connmark}`) },
      // ...so the app's replies get the mark back and route locally (table routeTable) to ztunnel.
      { chain: out, args: words(`-m connmark --mark ${connmark} -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff`) },
    ],
  };

  const natRules: Rule[] = [
    // Kubelet probes (SNAT'ed to the probe address on the node) reach the app directly.
    { chain: pre, args: words(`-s ${probe} -p tcp -j ACCEPT`) },
    // Everything else inbound, except HBONE and ztunnel's own traffic, goes to the plaintext port.
    { chain: pre, args: words(`! -d ${loopback} -p tcp -m tcp ! --dport ${inboundHbone} -m mark ! --mark ${mark} -j REDIRECT --to-ports ${inboundPlaintext}`) },
    { chain: out, args: words(`-d ${probe} -p tcp -j ACCEPT`) },
  ];
  if (o.dnsCapture) {
    natRules.push(
      { chain: out, args: words(`! -o lo -p udp -m mark ! --mark ${mark} -m udp --dport 53 -j REDIRECT --to-ports ${dns}`) },
      { chain: out, args: words(`! -d ${loopback} -p tcp -m tcp --dport 53 -m mark ! --mark ${mark} -j REDIRECT --to-ports ${dns}`) },
    );
  }
  natRules.push(
    // Replies of spoofed-source connections (mark restored from the connmark) are left alone.
    { chain: out, args: words(`-p tcp -m mark --mark ${connmark} -j ACCEPT`) },
    // The app talking to its own pod IP over lo is not captured.
    { chain: out, args: words(`! -d ${loopback} -o lo -j ACCEPT`) },
    { chain: out, args: words(`! -d ${loopback} -p tcp -m mark ! --mark ${mark} -j REDIRECT --to-ports ${outbound}`) },
  );
  const nat: TableRules = { table: "nat", chains: [out, pre], jumps: jumps(), rules: natRules };

  const tables = [mangle, nat];
  if (o.dnsCapture) {
    // Separate conntrack zone for ztunnel <-> upstream DNS, so its flows never collide with the
    // app's redirected ones on the same 5-tuple.
    tables.push({
      table: "raw",
      chains: [out, pre],
      jumps: jumps(),
      rules: [
        { chain: out, args: words(`-p udp -m mark --mark ${mark} -m udp --dport 53 -j CT --zone 1`) },
        { chain: pre, args: words(`-p udp -m mark ! --mark ${mark} -m udp --sport 53 -j CT --zone 1`) },
      ],
    });
  }
  return { family, tables };
}

/** Quotes an argument for iptables-restore input when needed (comments with spaces). */
export function quoteArg(a: string): string {
  return /^[^\s"'\\]+$/.test(a) ? a : `"${a.replace(/(["\\])/g, "\\$1")}"`;
}

export function ruleLine(op: "-A" | "-D", r: Rule): string {
  return [op, r.chain, ...r.args.map(quoteArg)].join(" ");
}

/** iptables-restore --noflush input that installs a RuleSet on a netns without any of our rules. */
export function renderRestore(set: RuleSet): string {
  const lines: string[] = [];
  for (const t of set.tables) {
    lines.push(`*${t.table}`);
    for (const c of t.chains) lines.push(`:${c} - [0:0]`);
    for (const j of t.jumps) lines.push(ruleLine("-A", j));
    for (const r of t.rules) lines.push(ruleLine("-A", r));
    lines.push("COMMIT");
  }
  return lines.join("\n") + "\n";
}
