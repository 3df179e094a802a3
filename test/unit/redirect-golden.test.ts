import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { generateRules, ipPlan, renderIpPlan, renderRestore, resolveRedirectOptions, type IpFamily } from "../../src/agent/redirect/index.js";

// Generated rules compared byte for byte with reviewed golden files; UPDATE_GOLDEN=1 rewrites them.
const dir = fileURLToPath(new URL("../golden/redirect/", import.meta.url));
const update = process.env.UPDATE_GOLDEN === "1";

function golden(name: string, actual: string): void {
  const path = `${dir}${name}`;
  if (update || !existsSync(path)) {
    if (!update) throw new Error(`golden ${name} is missing; run with UPDATE_GOLDEN=1 and review it`);
    writeFileSync(path, actual);
    return;
  }
  expect(actual).toBe(readFileSync(path, "utf8"));
}

describe("in-pod redirection rules match the golden files", () => {
  const cases: { name: string; family: IpFamily; dns: boolean }[] = [
    { name: "ipv4.golden", family: 4, dns: false },
    { name: "ipv4-dns.golden", family: 4, dns: true },
    { name: "ipv6.golden", family: 6, dns: false },
    { name: "ipv6-dns.golden", family: 6, dns: true },
  ];
  for (const c of cases) {
    it(`iptables-restore input: ${c.name}`, () => {
      golden(c.name, renderRestore(generateRules(c.family, resolveRedirectOptions({ dnsCapture: c.dns }))));
    });
  }

  it("ip rule and route plans", () => {
    const o = resolveRedirectOptions();
    golden("ip-plan-ipv4.golden", renderIpPlan(ipPlan(4, o)));
    golden("ip-plan-ipv6.golden", renderIpPlan(ipPlan(6, o)));
    golden("ip-plan-ipv6-lo-disabled.golden", renderIpPlan(ipPlan(6, o, { loIpv6Disabled: true })));
  });

  it("DNS capture only adds rules: the rules without it are a subsequence of the rules with it", () => {
    for (const family of [4, 6] as const) {
      const off = renderRestore(generateRules(family, resolveRedirectOptions({ dnsCapture: false }))).split("\n").filter(Boolean);
      const on = renderRestore(generateRules(family, resolveRedirectOptions())).split("\n");
      let i = 0;
      for (const line of on) if (line === off[i]) i++;
      // The raw table block is new; everything of the DNS-off output appears in order.
      expect(i).toBe(off.length);
      expect(on.join("\n")).toContain("-j CT --zone 1");
      expect(off.join("\n")).not.toContain("15053");
    }
  });

  it("DNS capture is on by default (Istio ≥ 1.25)", () => {
    expect(resolveRedirectOptions().dnsCapture).toBe(true);
    expect(renderRestore(generateRules(4, resolveRedirectOptions()))).toContain("--to-ports 15053");
  });

  it("options flow into the rules (marks, ports, probe address)", () => {
    const o = resolveRedirectOptions({ mark: 0x100, connmark: 0x222, probeAddress: "169.254.9.9", ports: { outbound: 16001 } });
    const text = renderRestore(generateRules(4, o));
    expect(text).toContain("-m mark ! --mark 0x100/0xfff -j REDIRECT --to-ports 16001");
    expect(text).toContain("--set-xmark 0x222/0xfff");
    expect(text).toContain("-s 169.254.9.9/32 -p tcp -j ACCEPT");
    expect(text).not.toContain("0x539");
  });

  it("rejects misspelled or invalid options with a hint", () => {
    expect(() => resolveRedirectOptions({ dnsCaptur: true } as never)).toThrow(/unknown redirect option "dnsCaptur"/);
    expect(() => resolveRedirectOptions({ ports: { outbond: 1 } as never })).toThrow(/unknown redirect port "outbond"/);
    expect(() => resolveRedirectOptions({ ports: { dns: 70000 } })).toThrow(/ports.dns must be an integer/);
    expect(() => resolveRedirectOptions({ probeAddress6: "169.254.7.127" })).toThrow(/probeAddress6 must be an IPv6/);
    expect(() => resolveRedirectOptions({ connmark: 0x539 })).toThrow(/must differ/);
  });
});
