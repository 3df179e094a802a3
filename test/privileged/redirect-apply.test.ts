import { afterAll, expect, it } from "vitest";
import { PodRedirector, RedirectCommandError } from "../../src/agent/redirect/index.js";
import type { IptablesVariant } from "../../src/agent/redirect/index.js";
import { createNetns, deleteNetns, execIn, netnsPath, runId } from "../harness/netns.js";
import { describePrivileged } from "../harness/privileged.js";

// Real kernel, plain netns (no traffic): the rules are accepted by both iptables backends, read
// back equal, re-applying is a no-op, drift is detected and repaired, removal is complete.

const id = runId();
const nsNames: string[] = [];

async function freshNetns(tag: string): Promise<string> {
  const ns = `r-${id}-${tag}`;
  await createNetns(ns);
  nsNames.push(ns);
  return ns;
}

/** iptables-save of both families without the timestamped comment lines and policy counters. */
async function saveAll(ns: string, variant: IptablesVariant): Promise<string> {
  let out = "";
  for (const bin of [`iptables-${variant}-save`, `ip6tables-${variant}-save`]) {
    const { stdout } = await execIn(ns, bin, []);
    out += stdout
      .split("\n")
      .filter((l) => !l.startsWith("#"))
      .map((l) => l.replace(/\[\d+:\d+\]/, "[0:0]"))
      .join("\n");
  }
  return out;
}

async function ipState(ns: string): Promise<string> {
  const parts: string[] = [];
  for (const f of ["-4", "-6"]) {
    parts.push((await execIn(ns, "ip", [f, "rule", "show"])).stdout);
    parts.push(await execIn(ns, "ip", [f, "route", "show", "table", "100"]).then((r) => r.stdout, () => ""));
  }
  return parts.join("");
}

describePrivileged("in-pod redirection on a real kernel", () => {
  afterAll(async () => {
    for (const ns of nsNames) await deleteNetns(ns);
  });

  for (const variant of ["nft", "legacy"] as const) {
    for (const dnsCapture of [false, true]) {
      it(`${variant}, DNS ${dnsCapture ? "on" : "off"}: apply, apply again (unchanged, identical save), check, remove, check`, async () => {
        const ns = await freshNetns(`${variant[0]}${dnsCapture ? "d" : "p"}`);
        const r = new PodRedirector({ dnsCapture, iptables: variant });
        expect(await r.iptablesVariant()).toBe(variant);

        const first = await r.apply(netnsPath(ns));
        expect(first.outcome).toBe("applied");
        expect(first.changes).toEqual(["ipv4 iptables", "ipv4 rule", "ipv4 route", "ipv6 iptables", "ipv6 rule", "ipv6 route"]);
        const save1 = await saveAll(ns, variant);
        const ip1 = await ipState(ns);
        expect(save1).toContain("-j REDIRECT --to-ports 15001");
        expect(save1).toContain("::1/128");
        expect(save1.includes("CT --zone 1")).toBe(dnsCapture);
        expect(ip1).toMatch(/32764:\s+from all fwmark 0x111\/0xfff lookup 100/);
        expect(ip1).toMatch(/local default dev lo/);

        const second = await r.apply(netnsPath(ns));
        expect(second).toEqual({ outcome: "unchanged", changes: [] });
        expect(await saveAll(ns, variant)).toBe(save1);
        expect(await ipState(ns)).toBe(ip1);
        expect(await r.check(netnsPath(ns))).toEqual({ state: "in-place", problems: [] });

        expect((await r.remove(netnsPath(ns))).outcome).toBe("removed");
        expect(await r.check(netnsPath(ns))).toEqual({ state: "missing", problems: [] });
        expect(await saveAll(ns, variant)).not.toContain("ISTIO");
        expect(await ipState(ns)).not.toMatch(/32764|local default/);
        expect((await r.remove(netnsPath(ns))).outcome).toBe("absent");
      });
    }
  }

  it("detects drift made with plain iptables and repairs it without touching foreign rules", async () => {
    const ns = await freshNetns("dr");
    // DNS capture off: the count below is of the mangle and nat jumps only (capture adds raw's).
    const r = new PodRedirector({ iptables: "nft", dnsCapture: false });
    await r.apply(netnsPath(ns));
    await execIn(ns, "iptables-nft", ["-t", "nat", "-I", "ISTIO_OUTPUT", "1", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT"]);
    await execIn(ns, "iptables-nft", ["-t", "nat", "-A", "OUTPUT", "-j", "ISTIO_OUTPUT"]);
    await execIn(ns, "iptables-nft", ["-t", "nat", "-A", "POSTROUTING", "-p", "udp", "-j", "ACCEPT"]);
    await execIn(ns, "ip", ["-6", "route", "del", "local", "::/0", "dev", "lo", "table", "100"]);

    const check = await r.check(netnsPath(ns));
    expect(check.state).toBe("drifted");
    expect(check.problems).toContain("ipv4 unexpected nat: -A ISTIO_OUTPUT -p tcp --dport 9999 -j ACCEPT");
    expect(check.problems).toContain("ipv6 missing route: ip -6 route add local ::/0 dev lo table 100");

    expect(await r.apply(netnsPath(ns))).toEqual({ outcome: "applied", changes: ["ipv4 iptables", "ipv6 route"] });
    expect(await r.check(netnsPath(ns))).toEqual({ state: "in-place", problems: [] });
    const save = await saveAll(ns, "nft");
    expect(save).not.toContain("9999");
    expect(save).toContain("-A POSTROUTING -p udp -j ACCEPT");
    expect(save.match(/-A OUTPUT -j ISTIO_OUTPUT/g)).toHaveLength(4); // (mangle + nat) x (IPv4 + IPv6), no duplicate
  });

  it("switching DNS capture on and off reconciles in place", async () => {
    const ns = await freshNetns("sw");
    const off = new PodRedirector({ iptables: "nft", ipv6: false, dnsCapture: false });
    const on = new PodRedirector({ iptables: "nft", ipv6: false, dnsCapture: true });
    await off.apply(netnsPath(ns));
    expect((await on.check(netnsPath(ns))).state).toBe("drifted");
    expect((await on.apply(netnsPath(ns))).changes).toEqual(["ipv4 iptables"]);
    expect(await saveAll(ns, "nft")).toContain("--to-ports 15053");
    expect((await off.apply(netnsPath(ns))).changes).toEqual(["ipv4 iptables"]);
    const save = await saveAll(ns, "nft");
    expect(save).not.toContain("15053");
    expect(save).not.toContain("CT --zone");
    expect(await off.check(netnsPath(ns))).toEqual({ state: "in-place", problems: [] });
  });

  it("a netns that does not exist gives an error naming it and the command", async () => {
    const r = new PodRedirector({ iptables: "nft" });
    const missing = `/var/run/netns/r-${id}-nope`;
    const err = await r.apply(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedirectCommandError);
    expect((err as Error).message).toContain(`netns ${missing}`);
    expect((err as Error).message).toContain("iptables-nft-save");
    expect((err as Error).message).toMatch(/No such file or directory/);
  });
});
