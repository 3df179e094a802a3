import { isIPv4 } from "node:net";
import { commandLine } from "../redirect/runner.js";
import type { CommandRunner, IptablesVariant } from "../redirect/index.js";
import { HostRulesError } from "../errors.js";

// Host side of DESIGN §7 (Istio's cni/pkg/iptables host rules): packets the node itself sends
// to an enrolled pod — kubelet probes — leave with source 169.254.7.127, which the in-pod
// rules accept without redirection. Which pods: an ipset of enrolled pod IPs, so adding a pod
// is one `ipset add`, not an iptables rewrite. Runs in the agent's own (node) netns.

export const PROBE_SET_V4 = "istio-inpod-probes-v4";
export const PROBE_SET_V6 = "istio-inpod-probes-v6";
export const HOST_CHAIN = "ISTIO_POSTRT";

export interface ProbeSnatOptions {
  ipv6: boolean;
  probeAddress: string;
  probeAddress6: string;
  variant: IptablesVariant;
  setV4?: string;
  setV6?: string;
}

/** The iptables arguments of the SNAT rule (for one family). */
export function snatRule(set: string, toSource: string): string[] {
  return ["-m", "owner", "--socket-exists", "-p", "tcp", "-m", "set", "--match-set", set, "dst", "-j", "SNAT", "--to-source", toSource];
}

export class ProbeSnat {
  private readonly setV4: string;
  private readonly setV6: string;

  constructor(
    private readonly runner: CommandRunner,
    private readonly o: ProbeSnatOptions,
  ) {
    this.setV4 = o.setV4 ?? PROBE_SET_V4;
    this.setV6 = o.setV6 ?? PROBE_SET_V6;
  }

  /** Creates the sets, the chain, the jump and the rule if missing (idempotent). */
  async ensure(): Promise<void> {
    await this.must("ipset", ["create", this.setV4, "hash:ip", "family", "inet", "-exist"]);
    await this.ensureChain(`iptables-${this.o.variant}`, this.setV4, this.o.probeAddress);
    if (this.o.ipv6) {
      await this.must("ipset", ["create", this.setV6, "hash:ip", "family", "inet6", "-exist"]);
      await this.ensureChain(`ip6tables-${this.o.variant}`, this.setV6, this.o.probeAddress6);
    }
  }

  async addPod(ips: readonly string[]): Promise<void> {
    for (const ip of ips) {
      const set = this.setFor(ip);
      if (set) await this.must("ipset", ["add", set, ip, "-exist"]);
    }
  }

  async removePod(ips: readonly string[]): Promise<void> {
    for (const ip of ips) {
      const set = this.setFor(ip);
      if (set) await this.must("ipset", ["del", set, ip, "-exist"]);
    }
  }

  /** Current members of both sets (tests, and pruning entries of pods no longer enrolled). */
  async members(): Promise<string[]> {
    const out: string[] = [];
    for (const set of this.o.ipv6 ? [this.setV4, this.setV6] : [this.setV4]) {
      const res = await this.runner.run("ipset", ["list", set, "-output", "save"]);
      if (res.code !== 0) continue;
      for (const line of res.stdout.split("\n")) {
        const m = /^add \S+ (\S+)/.exec(line);
        if (m) out.push(m[1]!);
      }
    }
    return out;
  }

  private setFor(ip: string): string | undefined {
    if (isIPv4(ip)) return this.setV4;
    return this.o.ipv6 ? this.setV6 : undefined;
  }

  private async ensureChain(ipt: string, set: string, toSource: string): Promise<void> {
    const created = await this.runner.run(ipt, ["-w", "-t", "nat", "-N", HOST_CHAIN]);
    if (created.code !== 0 && !/exists/i.test(created.stderr)) {
      throw new HostRulesError(`${commandLine(ipt, ["-t", "nat", "-N", HOST_CHAIN])} failed in ${this.runner.where}: ${created.stderr.trim()}`);
    }
    await this.ensureRule(ipt, "POSTROUTING", ["-j", HOST_CHAIN]);
    await this.ensureRule(ipt, HOST_CHAIN, snatRule(set, toSource));
  }

  private async ensureRule(ipt: string, chain: string, rule: string[]): Promise<void> {
    const check = await this.runner.run(ipt, ["-w", "-t", "nat", "-C", chain, ...rule]);
    if (check.code === 0) return;
    await this.must(ipt, ["-w", "-t", "nat", "-A", chain, ...rule]);
  }

  private async must(cmd: string, args: string[]): Promise<void> {
    const res = await this.runner.run(cmd, args);
    if (res.code !== 0) {
      throw new HostRulesError(`${commandLine(cmd, args)} failed in ${this.runner.where} (exit ${res.code}): ${res.stderr.trim()}; is ${cmd} installed and the agent privileged (NET_ADMIN)?`);
    }
  }
}
