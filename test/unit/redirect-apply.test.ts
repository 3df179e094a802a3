import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { PodRedirector, RedirectCommandError, type CommandRunner } from "../../src/agent/redirect/index.js";
import { FakeNetfilter } from "../harness/fake-netfilter.js";

const goldenDir = fileURLToPath(new URL("../golden/redirect/", import.meta.url));
const golden = (name: string): string => readFileSync(`${goldenDir}${name}`, "utf8");

function redirector(opts: ConstructorParameters<typeof PodRedirector>[0] = {}): PodRedirector {
  return new PodRedirector(opts, { variant: "nft" });
}

describe("applyRedirect against a fake netfilter", () => {
  it("a fresh netns gets exactly the golden rules (DNS capture on by default), the ip rule and the route, for both families", async () => {
    const fake = new FakeNetfilter();
    const res = await redirector().apply(fake);
    expect(res.outcome).toBe("applied");
    expect(res.changes).toEqual(["ipv4 iptables", "ipv4 rule", "ipv4 route", "ipv6 iptables", "ipv6 rule", "ipv6 route"]);
    const restores = fake.calls.filter((c) => c.cmd.endsWith("restore"));
    expect(restores.map((c) => [c.cmd, ...c.args].join(" "))).toEqual([
      "iptables-nft-restore --noflush -w 5",
      "ip6tables-nft-restore --noflush -w 5",
    ]);
    expect(restores[0]!.input).toBe(golden("ipv4-dns.golden"));
    expect(restores[1]!.input).toBe(golden("ipv6-dns.golden"));
    expect(await redirector().check(fake)).toEqual({ state: "in-place", problems: [] });
  });

  it("a pod that opts out of DNS capture gets the rules without it; opting back in is reconciled", async () => {
    const fake = new FakeNetfilter();
    const r = redirector({ ipv6: false });
    const first = await r.apply(fake, { dnsCapture: false });
    expect(first.outcome).toBe("applied");
    const restores = fake.calls.filter((c) => c.cmd.endsWith("restore"));
    expect(restores[0]!.input).toBe(golden("ipv4.golden"));
    expect(await r.check(fake, { dnsCapture: false })).toEqual({ state: "in-place", problems: [] });
    // The node's setting (capture on) sees the opted-out pod as drifted...
    expect((await r.check(fake)).state).toBe("drifted");
    // ...and the annotation removed: one apply brings capture back.
    expect(await r.apply(fake)).toEqual({ outcome: "applied", changes: ["ipv4 iptables"] });
    expect(fake.save(4)).toContain("--to-ports 15053");
    expect(await r.check(fake)).toEqual({ state: "in-place", problems: [] });
  });

  it("applying twice changes nothing the second time (no restore, no ip add)", async () => {
    const fake = new FakeNetfilter();
    const r = redirector({ dnsCapture: true });
    await r.apply(fake);
    const before = [fake.save(4), fake.save(6)];
    const mutations = fake.mutations().length;
    const second = await r.apply(fake);
    expect(second).toEqual({ outcome: "unchanged", changes: [] });
    expect(fake.mutations().length).toBe(mutations);
    expect([fake.save(4), fake.save(6)]).toEqual(before);
  });

  it("leaves other people's rules and chains alone", async () => {
    const fake = new FakeNetfilter();
    fake.seed(4, "*nat\n:KUBE-X - [0:0]\n-A OUTPUT -j KUBE-X\n-A KUBE-X -p tcp -j ACCEPT\nCOMMIT\n");
    const r = redirector({ ipv6: false });
    await r.apply(fake);
    await r.remove(fake);
    expect(fake.save(4)).toContain("-A OUTPUT -j KUBE-X");
    expect(fake.save(4)).toContain("-A KUBE-X -p tcp -j ACCEPT");
    expect(fake.save(4)).not.toContain("ISTIO");
  });

  it("repairs drift in one transaction: an extra rule, a duplicated jump, a deleted rule", async () => {
    const fake = new FakeNetfilter();
    const r = redirector({ ipv6: false, dnsCapture: false });
    await r.apply(fake);
    fake.seed(4, "*nat\n-A ISTIO_OUTPUT -p tcp --dport 9999 -j ACCEPT\n-A OUTPUT -j ISTIO_OUTPUT\n-D ISTIO_PRERT -s 169.254.7.127/32 -p tcp -j ACCEPT\nCOMMIT\n");
    const check = await r.check(fake);
    expect(check.state).toBe("drifted");
    expect(check.problems.join("\n")).toMatch(/unexpected nat: -A ISTIO_OUTPUT -p tcp --dport 9999 -j ACCEPT/);
    expect(check.problems.join("\n")).toMatch(/missing nat: -A ISTIO_PRERT -s 169.254.7.127\/32 -p tcp -j ACCEPT/);

    const calls = fake.calls.length;
    const res = await r.apply(fake);
    expect(res).toEqual({ outcome: "applied", changes: ["ipv4 iptables"] });
    const restores = fake.calls.slice(calls).filter((c) => c.cmd.endsWith("restore"));
    expect(restores).toHaveLength(1);
    // Both copies of the jump are deleted before the expected one is added back.
    const input = restores[0]!.input!;
    const nat = input.slice(input.indexOf("*nat"), input.indexOf("COMMIT", input.indexOf("*nat")));
    expect(nat.match(/-D OUTPUT -j ISTIO_OUTPUT/g)).toHaveLength(2);
    expect(await r.check(fake)).toEqual({ state: "in-place", problems: [] });
    expect(fake.save(4).match(/-A OUTPUT -j ISTIO_OUTPUT/g)).toHaveLength(2); // one in mangle, one in nat
  });

  it("turning DNS capture off removes the raw table chains and the DNS rules", async () => {
    const fake = new FakeNetfilter();
    await redirector({ ipv6: false, dnsCapture: true }).apply(fake);
    expect(fake.save(4)).toContain("CT --zone 1");
    const off = redirector({ ipv6: false, dnsCapture: false });
    expect((await off.check(fake)).state).toBe("drifted");
    await off.apply(fake);
    const save = fake.save(4);
    expect(save).not.toMatch(/15053|CT --zone/);
    expect(save.slice(save.indexOf("*raw"))).not.toMatch(/^\*raw[^*]*ISTIO/);
    expect(await off.check(fake)).toEqual({ state: "in-place", problems: [] });
  });

  it("adds the ip rule and route only when absent", async () => {
    const fake = new FakeNetfilter();
    fake.addIpRule(4);
    const res = await redirector({ ipv6: false }).apply(fake);
    expect(res.changes).toEqual(["ipv4 iptables", "ipv4 route"]);
    expect(fake.mutations().filter((m) => m.includes("rule add"))).toEqual([]);
  });

  it("skips the IPv6 local route when lo has IPv6 disabled", async () => {
    const fake = new FakeNetfilter();
    fake.loIpv6Disabled = true;
    const r = redirector();
    const res = await r.apply(fake);
    expect(res.changes).toContain("ipv6 rule");
    expect(res.changes).not.toContain("ipv6 route");
    expect((await r.check(fake)).state).toBe("in-place");
  });

  it("remove then check reports missing; remove again is a no-op", async () => {
    const fake = new FakeNetfilter();
    const r = redirector({ dnsCapture: true });
    expect((await r.check(fake)).state).toBe("missing");
    await r.apply(fake);
    const removed = await r.remove(fake);
    expect(removed.outcome).toBe("removed");
    expect(await r.check(fake)).toEqual({ state: "missing", problems: [] });
    expect(fake.save(4)).not.toContain("ISTIO");
    expect(fake.save(6)).not.toContain("ISTIO");
    expect(await r.remove(fake)).toEqual({ outcome: "absent", changes: [] });
  });

  it("a partial install (rules without ip rule) is drifted, not missing", async () => {
    const fake = new FakeNetfilter();
    const r = redirector({ ipv6: false });
    await r.apply(fake);
    await fake.run("ip", ["-4", "rule", "del", "fwmark", "0x111/0xfff", "pref", "32764", "lookup", "100"]);
    const check = await r.check(fake);
    expect(check.state).toBe("drifted");
    expect(check.problems).toEqual(["ipv4 missing ip rule: ip -4 rule add fwmark 0x111/0xfff pref 32764 lookup 100"]);
  });

  it("errors name the netns, the command and its stderr", async () => {
    const fake = new FakeNetfilter("/var/run/netns/pod-a");
    fake.failOn = { match: /restore/, stderr: "iptables-restore: line 3 failed" };
    const err = await redirector({ ipv6: false }).apply(fake).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedirectCommandError);
    expect((err as Error).message).toBe(
      "in-pod redirection in netns /var/run/netns/pod-a: `iptables-nft-restore --noflush -w 5` failed (exit 1): iptables-restore: line 3 failed",
    );
    expect((err as RedirectCommandError).code).toBe("REDIRECT_COMMAND_FAILED");
  });

  it("fails loudly when the backend reads the rules back differently (no endless re-apply)", async () => {
    const fake = new FakeNetfilter();
    // A backend that silently drops one rule on restore.
    const lossy: CommandRunner = {
      where: fake.where,
      run: (cmd, args, input) => fake.run(cmd, args, input?.replace(/^-A ISTIO_OUTPUT ! -d 127.0.0.1\/32 -o lo -j ACCEPT\n/m, "")),
    };
    await expect(redirector({ ipv6: false }).apply(lossy)).rejects.toThrow(/read back differently after iptables-restore: missing nat: -A ISTIO_OUTPUT ! -d 127.0.0.1\/32 -o lo -j ACCEPT/);
  });
});

describe("iptables backend detection", () => {
  const host = (stdout: string, code = 0): CommandRunner => ({
    where: "host",
    run: async (cmd) => (cmd === "iptables" ? { code, stdout, stderr: code ? "not found" : "" } : { code: 127, stdout: "", stderr: "nope" }),
  });
  it("follows the machine's iptables, honours an explicit choice, and explains a missing iptables", async () => {
    expect(await new PodRedirector({}, { host: host("iptables v1.8.9 (nf_tables)\n") }).iptablesVariant()).toBe("nft");
    expect(await new PodRedirector({}, { host: host("iptables v1.8.9 (legacy)\n") }).iptablesVariant()).toBe("legacy");
    expect(await new PodRedirector({ iptables: "legacy" }, { host: host("iptables v1.8.9 (nf_tables)\n") }).iptablesVariant()).toBe("legacy");
    await expect(new PodRedirector({}, { host: host("", 127) }).iptablesVariant()).rejects.toThrow(/install the iptables package/);
  });
});
