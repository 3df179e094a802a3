import { describe, expect, it } from "vitest";
import { Readiness } from "../../src/ztunnel/readiness.js";
import { parseLocalConfig } from "../../src/ztunnel/state/local-config.js";
import { WorkloadStore } from "../../src/ztunnel/state/store.js";
import { WorkerCerts } from "../../src/ztunnel/worker/certs.js";
import { routeOutbound, ZTUNNEL_PORTS } from "../../src/ztunnel/worker/outbound-route.js";
import { planOutbound } from "../../src/ztunnel/worker/resolve.js";
import { certFor, id } from "../fixtures/ztunnel-pki.js";

// Pure parts of the worker and main thread: where an outbound connection goes, readiness
// reporting, and a worker's reference-counted certificate copies.

const STATE = `
workloads:
  - uid: a
    name: a
    namespace: ns
    serviceAccount: sa-a
    workloadIps: ["10.0.0.1"]
    protocol: HBONE
    services:
      ns/web.ns.svc.cluster.local:
        "80": 8080
  - uid: legacy
    name: legacy
    namespace: ns
    workloadIps: ["10.0.0.9"]
    protocol: TCP
  - uid: sick
    name: sick
    namespace: ns
    workloadIps: ["10.0.0.7"]
    protocol: HBONE
    status: Unhealthy
    services:
      ns/down.ns.svc.cluster.local: {}
services:
  - name: web
    namespace: ns
    hostname: web.ns.svc.cluster.local
    vips: ["10.96.0.1"]
    ports:
      "80": 8080
  - name: down
    namespace: ns
    hostname: down.ns.svc.cluster.local
    vips: ["10.96.0.2"]
    ports:
      "80": 80
`;

function store(): WorkloadStore {
  const s = new WorkloadStore(() => 0);
  s.replace(parseLocalConfig(STATE), "test");
  return s;
}

describe("planOutbound", () => {
  it("an HBONE workload IP goes over HBONE to <ip>:15008 with its identity", () => {
    const plan = planOutbound(store(), { ip: "10.0.0.1", port: 9000 });
    expect(plan).toMatchObject({ t: "hbone", hboneAddress: { ip: "10.0.0.1", port: 15008 }, target: { ip: "10.0.0.1", port: 9000 }, service: undefined });
    if (plan.t === "hbone") expect(plan.identities).toEqual([id("ns", "sa-a")]);
  });

  it("a service VIP picks a healthy endpoint and its target port", () => {
    const plan = planOutbound(store(), { ip: "10.96.0.1", port: 80 });
    expect(plan).toMatchObject({ t: "hbone", hboneAddress: { ip: "10.0.0.1", port: 15008 }, target: { ip: "10.0.0.1", port: 8080 }, service: "web.ns.svc.cluster.local" });
  });

  it("a TCP workload and an unknown address are passthrough", () => {
    expect(planOutbound(store(), { ip: "10.0.0.9", port: 5432 })).toMatchObject({ t: "passthrough", target: { ip: "10.0.0.9", port: 5432 } });
    expect(planOutbound(store(), { ip: "192.0.2.1", port: 443 })).toMatchObject({ t: "passthrough", workload: undefined });
  });

  it("a service without healthy endpoints is refused (UH); a VIP port the service lacks is passthrough", () => {
    const plan = planOutbound(store(), { ip: "10.96.0.2", port: 80 });
    expect(plan.t).toBe("refuse");
    if (plan.t === "refuse") expect(plan.error.responseFlag).toBe("UH");
    expect(planOutbound(store(), { ip: "10.96.0.1", port: 81 }).t).toBe("passthrough");
  });
});

describe("routeOutbound (resolve, then policy)", () => {
  it("refuses loopback and every ztunnel port as original destination (self-loop), whatever resolve said", () => {
    const st = store();
    for (const dst of [
      { ip: "127.0.0.1", port: 15001 },
      { ip: "127.0.0.53", port: 8080 },
      { ip: "::1", port: 80 },
      ...[...ZTUNNEL_PORTS].map((port) => ({ ip: "10.0.0.1", port })),
      { ip: "192.0.2.1", port: 15006 },
    ]) {
      const plan = routeOutbound({ store: st, dst });
      expect(plan.t, `${dst.ip}:${dst.port}`).toBe("refuse");
      if (plan.t === "refuse") expect(plan.error.code).toBe("LOOP_DETECTED");
    }
    expect([...ZTUNNEL_PORTS].sort()).toEqual([15000, 15001, 15006, 15008, 15020, 15021, 15053]);
  });

  it("leaves every other destination as resolve planned it", () => {
    const st = store();
    for (const dst of [
      { ip: "10.0.0.1", port: 9000 },
      { ip: "10.96.0.1", port: 80 },
      { ip: "10.96.0.2", port: 80 },
      { ip: "192.0.2.1", port: 443 },
    ]) {
      expect(routeOutbound({ store: st, dst })).toEqual(planOutbound(st, dst));
    }
  });
});

describe("Readiness", () => {
  it("is ready only when every check is empty, and names what is pending", () => {
    const r = new Readiness();
    let pods: string[] = ["pod x pending"];
    r.register("workers", () => []);
    r.register("pods", () => pods);
    expect(r.report()).toEqual({ ready: false, pending: ["pods: pod x pending"] });
    pods = [];
    expect(r.report()).toEqual({ ready: true, pending: [] });
  });
});

describe("WorkerCerts", () => {
  it("shares one certificate per identity, notifies renewals, and drops it with the last pod", async () => {
    const certs = new WorkerCerts();
    const identity = id("ns", "sa");
    const first = await certFor(identity);
    certs.retain(first);
    certs.retain(first);
    expect(await certs.get(identity)).toBe(first);
    const renewed: string[] = [];
    certs.onRenew(identity, (c) => renewed.push(c.certPem));
    const second = await certFor(identity);
    certs.update(second);
    expect(renewed).toEqual([second.certPem]);
    certs.release(identity);
    expect(await certs.get(identity)).toBe(second);
    certs.release(identity);
    await expect(certs.get(identity)).rejects.toThrow(/no certificate/);
    // A renewal for an identity no pod uses any more is ignored.
    certs.update(first);
    expect(certs.size).toBe(0);
  });
});
