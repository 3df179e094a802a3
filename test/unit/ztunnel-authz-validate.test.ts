import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { AuthzPolicyError, parsePolicies } from "../../src/ztunnel/authz/index.js";
import { cidrContains, parseCidr, parseIp } from "../../src/ztunnel/authz/cidr.js";
import { compileStringMatch, stringMatches } from "../../src/ztunnel/authz/string-match.js";

function errorOf(raw: unknown): AuthzPolicyError {
  try {
    parsePolicies(raw);
  } catch (err) {
    if (err instanceof AuthzPolicyError) return err;
    throw err;
  }
  throw new Error("expected an AuthzPolicyError");
}

const base = { name: "p", namespace: "default", scope: "Namespace", action: "Deny" };

describe("policy validation names the field", () => {
  const bad: [string, unknown, string, RegExp][] = [
    ["not a list", { a: 1 }, "policies", /expected a list/],
    ["policy not a mapping", ["x"], "policies[0]", /expected a mapping/],
    ["missing name", [{ namespace: "default" }], "policies[0].name", /is required/],
    ["empty namespace", [{ name: "p", namespace: " " }], "policies[0].namespace", /must not be empty/],
    ["unknown scope with hint", [{ ...base, scope: "namespace" }], "policies[0].scope", /did you mean Namespace/],
    ["unknown action", [{ ...base, action: "Reject" }], "policies[0].action", /not one of Allow, Deny/],
    ["misspelled policy key", [{ ...base, dryrun: true }], "policies[0].dryrun", /did you mean dryRun/],
    ["dryRun not boolean", [{ ...base, dryRun: "yes" }], "policies[0].dryRun", /true or false/],
    ["selector is the local file's, not the model's", [{ ...base, selector: { matchLabels: { a: "b" } } }], "policies[0].selector", /unknown field/],
    ["Audit is reported as unsupported", [{ ...base, action: "Audit" }], "policies[0].action", /Audit is not supported/],
    ["rule not a list", [{ ...base, rules: [{}] }], "policies[0].rules[0]", /expected a list/],
    ["misspelled match key", [{ ...base, rules: [[[{ principal: ["*"] }]]] }], "policies[0].rules[0][0][0].principal", /did you mean principals/],
    ["wildcard in the middle", [{ ...base, rules: [[[{ principals: ["cluster.local/*/sa/x"] }]]] }], "policies[0].rules[0][0][0].principals[0]", /only allowed at the start/],
    ["spiffe:// prefix", [{ ...base, rules: [[[{ notPrincipals: ["spiffe://cluster.local/ns/a/sa/b"] }]]] }], "policies[0].rules[0][0][0].notPrincipals[0]", /without "spiffe:\/\/"/],
    ["empty namespace match", [{ ...base, rules: [[[{ namespaces: [""] }]]] }], "policies[0].rules[0][0][0].namespaces[0]", /must not be empty/],
    ["unknown object match", [{ ...base, rules: [[[{ namespaces: [{ exact: "a" }] }]]] }], "policies[0].rules[0][0][0].namespaces[0]", /did you mean Exact/],
    ["two-key object match", [{ ...base, rules: [[[{ namespaces: [{ Exact: "a", Prefix: "b" }] }]]] }], "policies[0].rules[0][0][0].namespaces[0]", /exactly one/],
    ["bad CIDR prefix", [{ ...base, rules: [[[{ sourceIps: ["10.0.0.0/33"] }]]] }], "policies[0].rules[0][0][0].sourceIps[0]", /prefix length "33"/],
    ["bad IP", [{ ...base, rules: [[[{ destinationIps: ["10.0.0.x/8"] }]]] }], "policies[0].rules[0][0][0].destinationIps[0]", /not an IP address/],
    ["v6 prefix too long", [{ ...base, rules: [[[{ notSourceIps: ["fd00::/129"] }]]] }], "policies[0].rules[0][0][0].notSourceIps[0]", /0-128/],
    ["port 0", [{ ...base, rules: [[[{ destinationPorts: [0] }]]] }], "policies[0].rules[0][0][0].destinationPorts[0]", /not a port/],
    ["port too big", [{ ...base, rules: [[[{ notDestinationPorts: [70000] }]]] }], "policies[0].rules[0][0][0].notDestinationPorts[0]", /not a port/],
    ["bad service account", [{ ...base, rules: [[[{ serviceAccounts: ["default"] }]]] }], "policies[0].rules[0][0][0].serviceAccounts[0]", /namespace\/serviceAccount/],
    ["service account object missing field", [{ ...base, rules: [[[{ serviceAccounts: [{ namespace: "a" }] }]]] }], "policies[0].rules[0][0][0].serviceAccounts[0].serviceAccount", /is required/],
    ["duplicate policy", [base, base], "policies[1].name", /duplicate policy "default\/p"/],
  ];
  for (const [name, raw, path, msg] of bad) {
    it(name, () => {
      const err = errorOf(raw);
      expect(err.path).toBe(path);
      expect(err.message).toMatch(msg);
      expect(err.message.startsWith(`${path}: `)).toBe(true);
      expect(err.code).toBe("AUTHZ_POLICY_INVALID");
    });
  }

  it("normalises a valid YAML policy set (defaults, string ports, shorthand service accounts)", () => {
    const raw = parseYaml(`
- name: allow-sleep
  namespace: default
  rules:
    - - - principals: ["cluster.local/ns/default/sa/sleep", {Prefix: "cluster.local/ns/ops/"}]
          serviceAccounts: ["default/sleep"]
          destinationPorts: ["8080"]
          sourceIps: ["10.0.0.0/8", "fd00::/8"]
- name: require-mtls
  namespace: istio-system
  scope: Global
  action: Deny
  dryRun: true
  rules: [[[{notPrincipals: ["*"]}]]]
`);
    const out = parsePolicies(raw);
    expect(out[0]).toMatchObject({ scope: "Namespace", action: "Allow" });
    expect(out[0]?.rules[0]?.[0]?.[0]).toEqual({
      principals: [
        { kind: "exact", value: "cluster.local/ns/default/sa/sleep" },
        { kind: "prefix", value: "cluster.local/ns/ops/" },
      ],
      serviceAccounts: [{ namespace: "default", serviceAccount: "sleep" }],
      destinationPorts: [8080],
      sourceIps: ["10.0.0.0/8", "fd00::/8"],
    });
    expect(out[1]).toMatchObject({ scope: "Global", action: "Deny", dryRun: true });
    expect(out[0]?.dryRun).toBe(false);
  });

  it("treats absent or null policies as none", () => {
    expect(parsePolicies(undefined)).toEqual([]);
    expect(parsePolicies(null)).toEqual([]);
  });
});

describe("string matches", () => {
  it.each([
    ["*", "anything", true],
    ["*", "", false],
    ["abc*", "abcdef", true],
    ["abc*", "xabc", false],
    ["*def", "abcdef", true],
    ["*def", "defx", false],
    ["exact", "exact", true],
    ["exact", "exactly", false],
  ])("%s vs %s", (spec, value, expected) => {
    const m = compileStringMatch(spec);
    if (typeof m === "string") throw new Error(m);
    expect(stringMatches(m, value)).toBe(expected);
  });

  it("rejects ambiguous wildcards", () => {
    expect(compileStringMatch("*a*")).toMatch(/both ends/);
    expect(compileStringMatch("**")).toMatch(/both ends/);
    expect(compileStringMatch({ Prefix: "" })).toMatch(/must not be empty/);
    expect(compileStringMatch({ constructor: "x" })).toMatch(/unknown match type/);
  });
});

describe("IPs and CIDRs", () => {
  it("parses IPv6 forms to the same words", () => {
    const a = parseIp("fd00::1");
    expect(parseIp("fd00:0:0:0:0:0:0:1")).toEqual(a);
    expect(parseIp("FD00::0001")).toEqual(a);
    expect(parseIp("::ffff:10.1.2.3")).toEqual(parseIp("10.1.2.3"));
    expect(parseIp("::1.2.3.4")).toMatchObject({ v6: true, w3: 0x01020304 });
    expect(parseIp("fe80::1%eth0")).toMatchObject({ v6: true, w0: 0xfe800000, w3: 1 });
    expect(parseIp("10.0.0")).toBeUndefined();
    for (const bad of ["256.1.1.1", "1.2.3.4.5", "1..2.3", ".1.2.3", "1.2.3.", "010.0.0.1", "1.2.3.4 ", ""]) expect(parseIp(bad)).toBeUndefined();
    expect(parseIp("0.0.0.0")).toEqual({ v6: false, w0: 0, w1: 0, w2: 0, w3: 0 });
    expect(parseIp("255.255.255.255")?.w3).toBe(0xffffffff);
  });

  it("masks host bits and handles the edges", () => {
    const c = parseCidr("10.1.2.3/8");
    if (typeof c === "string") throw new Error(c);
    expect(cidrContains(c, parseIp("10.255.0.1") ?? fail())).toBe(true);
    expect(cidrContains(c, parseIp("11.0.0.1") ?? fail())).toBe(false);
    const mapped = parseCidr("::ffff:10.0.0.0/104");
    if (typeof mapped === "string") throw new Error(mapped);
    expect(mapped).toMatchObject({ v6: false, prefix: 8 });
    expect(parseCidr("::ffff:0:0/64")).toMatch(/IPv4-mapped/);
  });

  // Reference: BigInt arithmetic on the full 128-bit value.
  const v6 = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(":"));
  const big = (s: string): bigint => {
    const w = parseIp(s) ?? fail();
    return (BigInt(w.w0) << 96n) | (BigInt(w.w1) << 64n) | (BigInt(w.w2) << 32n) | BigInt(w.w3);
  };
  it("IPv6 containment agrees with 128-bit arithmetic", () => {
    fc.assert(
      fc.property(v6, v6, fc.integer({ min: 0, max: 128 }), (net, ip, len) => {
        // Mapped addresses canonicalise to IPv4; keep the property about true IPv6.
        fc.pre(parseIp(net)?.v6 === true && parseIp(ip)?.v6 === true);
        const c = parseCidr(`${net}/${len}`);
        if (typeof c === "string") throw new Error(c);
        const mask = len === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - len)) - 1n);
        expect(cidrContains(c, parseIp(ip) ?? fail())).toBe((big(net) & mask) === (big(ip) & mask));
      }),
      { numRuns: 500 },
    );
  });

  it("IPv4 containment agrees with 32-bit arithmetic", () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((t) => t.join("."));
    fc.assert(
      fc.property(v4, v4, fc.integer({ min: 0, max: 32 }), (net, ip, len) => {
        const c = parseCidr(`${net}/${len}`);
        if (typeof c === "string") throw new Error(c);
        const n = (s: string): bigint => s.split(".").reduce((a, x) => (a << 8n) | BigInt(x), 0n);
        const mask = len === 0 ? 0n : ((1n << 32n) - 1n) ^ ((1n << BigInt(32 - len)) - 1n);
        expect(cidrContains(c, parseIp(ip) ?? fail())).toBe((n(net) & mask) === (n(ip) & mask));
      }),
      { numRuns: 500 },
    );
  });
});

function fail(): never {
  throw new Error("unexpected parse failure");
}
