import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { PolicyAuthorizer, UNKNOWN_DESTINATION, parsePolicy, type AuthzPolicy, type DestinationWorkload } from "../../src/ztunnel/authz/index.js";
import type { Authorizer } from "../../src/ztunnel/proxy/hbone-server.js";
import { makeIdentity } from "../../src/ztunnel/tls/identity.js";

const sleep = makeIdentity("cluster.local", "default", "sleep");
const echo: DestinationWorkload = { namespace: "default", authorizationPolicies: [] };
const pol = (raw: Record<string, unknown>): AuthzPolicy => parsePolicy(raw, "test");
const requireMtls: AuthzPolicy = pol({ name: "require-mtls", namespace: "default", scope: "Namespace", action: "Deny", rules: [[[{ notPrincipals: ["*"] }]]] });

function capture(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split("\n")) if (l !== "") lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: "info" }, stream), lines };
}

describe("PolicyAuthorizer", () => {
  it("is the HBONE server's Authorizer and denies a policy-denied CONNECT with the policy in the reason", async () => {
    let policies: readonly AuthzPolicy[] = [pol({ ...requireMtls, rules: [[[{ namespaces: ["default"] }]]] })];
    const authz: Authorizer = new PolicyAuthorizer({ policies: () => policies, workload: (ip) => (ip === "10.0.0.1" ? echo : undefined) });
    const d = await authz.authorize({ source: sleep, sourceIp: "10.0.0.2", destination: { ip: "10.0.0.1", port: 8080 } });
    expect(d).toMatchObject({ allow: false });
    if (!d.allow) expect(d.reason).toContain("default/require-mtls");
    policies = [];
    expect((await authz.authorize({ source: sleep, sourceIp: "10.0.0.2", destination: { ip: "10.0.0.1", port: 8080 } })).allow).toBe(true);
  });

  it("checks plaintext inbound with no identity (require mTLS)", () => {
    const authz = new PolicyAuthorizer({ policies: () => [requireMtls], workload: () => echo });
    const base = { sourceIp: "10.0.0.2", destinationIp: "10.0.0.1", destinationPort: 8080 };
    expect(authz.check({ ...base, sourceIdentity: undefined })).toMatchObject({ allow: false, policy: "default/require-mtls" });
    expect(authz.check({ ...base, sourceIdentity: sleep }).allow).toBe(true);
  });

  it("denies when the destination workload is unknown", () => {
    const authz = new PolicyAuthorizer({ policies: () => [], workload: () => undefined });
    expect(authz.check({ sourceIdentity: sleep, sourceIp: "10.0.0.2", destinationIp: "10.0.0.9", destinationPort: 80 })).toBe(UNKNOWN_DESTINATION);
  });

  it("compiles once per policy array and fails closed on a set that does not compile", () => {
    const good: AuthzPolicy[] = [requireMtls];
    // A source bug: a CIDR the model should never hold.
    const bad: AuthzPolicy[] = [{ ...requireMtls, rules: [[[{ sourceIps: ["10.0.0.0/99"] }]]] }];
    let current = good;
    const { log, lines } = capture();
    const authz = new PolicyAuthorizer({ policies: () => current, workload: () => echo, log });
    const first = authz.engine();
    expect(authz.engine()).toBe(first);
    current = bad;
    const conn = { sourceIdentity: sleep, sourceIp: "10.0.0.2", destinationIp: "10.0.0.1", destinationPort: 8080 };
    const d = authz.check(conn);
    expect(d.allow).toBe(false);
    expect(d.reason).toMatch(/invalid CIDR/);
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
    authz.check(conn);
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
    current = [...good];
    expect(authz.check(conn).allow).toBe(true);
  });

  it("logs what a dry-run policy would have done, and only logs at info when it is enabled", () => {
    const dry: AuthzPolicy = pol({ ...requireMtls, name: "dry", rules: [[[{ principals: ["*"] }]]], dryRun: true });
    const { log, lines } = capture();
    const authz = new PolicyAuthorizer({ policies: () => [dry], workload: () => echo, log });
    const d = authz.check({ sourceIdentity: sleep, sourceIp: "10.0.0.2", destinationIp: "10.0.0.1", destinationPort: 8080 });
    expect(d.allow).toBe(true);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: "dry-run authorization result", allow: true, dryRunAllow: false, dryRunPolicy: "default/dry", dst: "10.0.0.1:8080" });
    log.level = "warn";
    authz.check({ sourceIdentity: sleep, sourceIp: "10.0.0.2", destinationIp: "10.0.0.1", destinationPort: 8080 });
    expect(lines).toHaveLength(1);
  });

  it("re-checks open connections with the engine, denying those whose destination is gone", () => {
    let workloads = new Map([["10.0.0.1", echo]]);
    const authz = new PolicyAuthorizer({ policies: () => [requireMtls], workload: (ip) => workloads.get(ip) });
    const open = [
      { tag: "mtls", sourceIdentity: sleep, sourceIp: "10.0.0.2", destinationIp: "10.0.0.1", destinationPort: 8080 },
      { tag: "plain", sourceIdentity: undefined, sourceIp: "10.0.0.3", destinationIp: "10.0.0.1", destinationPort: 8080 },
    ];
    expect(authz.recheck(open, (c) => c).map((r) => r.connection.tag)).toEqual(["plain"]);
    workloads = new Map();
    expect(authz.recheck(open, (c) => c).map((r) => [r.connection.tag, r.decision])).toEqual([
      ["mtls", UNKNOWN_DESTINATION],
      ["plain", UNKNOWN_DESTINATION],
    ]);
  });
});
