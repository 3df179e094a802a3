import * as dnsPacket from "dns-packet";
import type { Answer } from "dns-packet";
import { describe, expect, it } from "vitest";
import { DnsDirectory } from "../../src/ztunnel/dns/directory.js";
import { aliases, kubeFqdns, wildcards } from "../../src/ztunnel/dns/names.js";
import { DnsResolver, type Resolution } from "../../src/ztunnel/dns/resolver.js";
import { buildResponse, fitForUdp, parseQuery, withId } from "../../src/ztunnel/dns/codec.js";
import type { Service, StateData, Workload } from "../../src/ztunnel/state/types.js";

function wl(name: string, ns: string, ips: string[], extra: Partial<Workload> = {}): Workload {
  return {
    uid: `${ns}/${name}`, name, namespace: ns, serviceAccount: "default", trustDomain: "cluster.local", workloadIps: ips,
    protocol: "HBONE", node: "n0", network: "", status: "Healthy", services: {}, labels: {}, authorizationPolicies: [], ...extra,
  };
}

function svc(name: string, ns: string, vips: string[], extra: Partial<Service> = {}): Service {
  return {
    name, namespace: ns, hostname: `${name}.${ns}.svc.cluster.local`, vips: vips.map((address) => ({ network: "", address })),
    ports: { "80": 8080 }, subjectAltNames: [], ...extra,
  };
}

const state: StateData = {
  services: [
    svc("web", "ns1", ["10.96.0.10", "fd00:96::10"]),
    svc("web", "ns2", ["10.96.0.20"]),
    svc("v4only", "ns1", ["10.96.0.30"], { ipFamilies: "IPv4" }),
    svc("db", "ns1", [], { ports: { "5432": 0, "9000": 9100 }, portNames: { "5432": "postgres", "9000": "metrics" } }),
    svc("api", "ns1", ["10.96.0.40"], { portNames: { "80": "http" } }),
    { name: "ext", namespace: "ns1", hostname: "*.example.com", vips: [{ network: "", address: "240.240.0.1" }], ports: { "443": 443 }, subjectAltNames: [] },
    { name: "novip", namespace: "ns1", hostname: "novip.example.org", vips: [], ports: {}, subjectAltNames: [] },
  ],
  workloads: [
    wl("db-0", "ns1", ["10.0.0.5", "fd00::5"], { hostname: "db-0", services: { "ns1/db.ns1.svc.cluster.local": { "5432": 0, "9000": 0 } } }),
    wl("db-1", "ns1", ["10.0.0.6"], { hostname: "db-1", services: { "ns1/db.ns1.svc.cluster.local": { "5432": 6432, "9000": 0 } } }),
    wl("db-x", "ns1", ["10.0.0.7"], { status: "Unhealthy", services: { "ns1/db.ns1.svc.cluster.local": {} } }),
    wl("anon", "ns1", ["10.0.0.8"], { services: { "ns1/db.ns1.svc.cluster.local": {} } }),
  ],
  policies: [],
  notices: [],
};

const dir = new DnsDirectory(state);
const resolver = new DnsResolver({ clusterDomain: "cluster.local", ipv6: true, shuffle: (x) => x });
const client = { namespace: "ns1", network: "" };

function ask(name: string, type: "A" | "AAAA" | "SRV" | "TXT" = "A", from = client): Resolution {
  return resolver.resolve(dir, { name, type, class: "IN" }, from);
}

function data(r: Resolution, type: string): unknown[] {
  if (r.kind !== "answer") throw new Error(`expected an answer, got ${r.kind}`);
  return r.answers.filter((a) => a.type === type).map((a) => (a as Answer & { data: unknown }).data);
}

describe("DNS names", () => {
  it("expands partial names into Kubernetes FQDNs as ztunnel does", () => {
    expect(kubeFqdns("name", "ns1", "cluster.local")).toEqual([{ name: "name.ns1.svc.cluster.local", podHost: false }]);
    expect(kubeFqdns("name.ns2", "ns1", "cluster.local")).toEqual([
      { name: "name.ns2.svc.cluster.local", podHost: false },
      { name: "name.ns2.ns1.svc.cluster.local", podHost: true },
    ]);
    expect(kubeFqdns("pod.sub.ns.svc", "ns1", "cluster.local")).toEqual([{ name: "pod.sub.ns.svc.cluster.local", podHost: true }]);
    expect(kubeFqdns("name.ns2.svc.cluster.local", "ns1", "cluster.local")).toEqual([]);
  });

  it("lists wildcards from most to least specific", () => {
    expect(wildcards("www.example.com")).toEqual(["www.example.com", "*.example.com", "*.com"]);
  });

  it("strips the pod's search domains", () => {
    const names = aliases("web.ns2.ns1.svc.cluster.local", "ns1", "cluster.local").map((a) => [a.name, a.stripped]);
    expect(names).toContainEqual(["web.ns2", "web.ns2"]);
    expect(names).toContainEqual(["web.ns2.svc.cluster.local", "web.ns2"]);
  });
});

describe("DNS resolver over the workload state", () => {
  it("answers a service FQDN with its VIPs by family, TTL 30", () => {
    const a = ask("web.ns1.svc.cluster.local");
    expect(data(a, "A")).toEqual(["10.96.0.10"]);
    expect(a.kind === "answer" && a.answers[0]?.type === "A" && a.answers[0].ttl).toBe(30);
    expect(data(ask("web.ns1.svc.cluster.local", "AAAA"), "AAAA")).toEqual(["fd00:96::10"]);
    expect(data(ask("Web.NS1.svc.cluster.local."), "A")).toEqual(["10.96.0.10"]);
  });

  it("resolves short names the way the pod's search path expands them", () => {
    expect(data(ask("web"), "A")).toEqual(["10.96.0.10"]);
    expect(data(ask("web.ns2"), "A")).toEqual(["10.96.0.20"]);
    // The resolver appended the first search domain to "web.ns2": a CNAME to the real service.
    const r = ask("web.ns2.ns1.svc.cluster.local");
    expect(data(r, "CNAME")).toEqual(["web.ns2.svc.cluster.local"]);
    expect(data(r, "A")).toEqual(["10.96.0.20"]);
    // Another namespace's client gets its own namespace's "web"... there is none in ns3: ns1's or ns2's.
    expect(data(ask("web", "A", { namespace: "ns2", network: "" }), "A")).toEqual(["10.96.0.20"]);
  });

  it("answers a single-stack service's other family with no records (NODATA), not NXDOMAIN", () => {
    const r = ask("v4only.ns1.svc.cluster.local", "AAAA");
    expect(r).toEqual({ kind: "answer", rcode: "NOERROR", answers: [], additionals: [] });
  });

  it("omits AAAA for mesh names when IPv6 is off on the node", () => {
    const v4 = new DnsResolver({ clusterDomain: "cluster.local", ipv6: false });
    const r = v4.resolve(dir, { name: "web.ns1.svc.cluster.local", type: "AAAA" }, client);
    expect(r).toMatchObject({ kind: "answer", answers: [] });
  });

  it("answers headless services with their ready endpoints and pod hostnames with the pod", () => {
    expect(data(ask("db.ns1.svc.cluster.local"), "A")).toEqual(["10.0.0.5", "10.0.0.6", "10.0.0.8"]);
    expect(data(ask("db-1.db.ns1.svc.cluster.local"), "A")).toEqual(["10.0.0.6"]);
    expect(data(ask("db-0.db.ns1.svc.cluster.local", "AAAA"), "AAAA")).toEqual(["fd00::5"]);
    expect(data(ask("10-0-0-8.db.ns1.svc.cluster.local"), "A")).toEqual(["10.0.0.8"]);
    // Short form through the search path.
    expect(data(ask("db-0.db"), "A")).toEqual(["10.0.0.5"]);
    // Unhealthy pods are not listed and unknown pods are not ours.
    expect(ask("db-x.db.ns1.svc.cluster.local")).toEqual({ kind: "forward" });
  });

  it("answers wildcard hosts", () => {
    expect(data(ask("api.example.com"), "A")).toEqual(["240.240.0.1"]);
  });

  it("serves SRV for named ports: one record per ready endpoint of a headless service", () => {
    const r = ask("_postgres._tcp.db.ns1.svc.cluster.local", "SRV");
    expect(data(r, "SRV")).toEqual([
      { priority: 0, weight: 33, port: 5432, target: "db-0.db.ns1.svc.cluster.local" },
      { priority: 0, weight: 33, port: 6432, target: "db-1.db.ns1.svc.cluster.local" },
      { priority: 0, weight: 33, port: 5432, target: "10-0-0-8.db.ns1.svc.cluster.local" },
    ]);
    expect(r.kind === "answer" && r.additionals.map((a) => `${a.name} ${a.type}`)).toEqual([
      "db-0.db.ns1.svc.cluster.local A",
      "db-0.db.ns1.svc.cluster.local AAAA",
      "db-1.db.ns1.svc.cluster.local A",
      "10-0-0-8.db.ns1.svc.cluster.local A",
    ]);
    expect(data(ask("_metrics._tcp.db", "SRV"), "SRV")).toContainEqual({ priority: 0, weight: 33, port: 9100, target: "db-0.db.ns1.svc.cluster.local" });
    expect(data(ask("_http._tcp.api.ns1.svc.cluster.local", "SRV"), "SRV")).toEqual([{ priority: 0, weight: 100, port: 80, target: "api.ns1.svc.cluster.local" }]);
    expect(ask("_nope._tcp.db.ns1.svc.cluster.local", "SRV")).toMatchObject({ kind: "answer", rcode: "NXDOMAIN" });
    expect(ask("_postgres._udp.db.ns1.svc.cluster.local", "SRV")).toMatchObject({ kind: "answer", rcode: "NXDOMAIN" });
  });

  it("forwards everything that is not a mesh name or not an address/SRV question", () => {
    expect(ask("www.example.org")).toEqual({ kind: "forward" });
    expect(ask("novip.example.org")).toEqual({ kind: "forward" });
    expect(ask("web.ns1.svc.cluster.local", "TXT")).toEqual({ kind: "forward" });
    expect(ask("_http._tcp.www.example.org", "SRV")).toEqual({ kind: "forward" });
  });
});

describe("DNS codec", () => {
  const query = (extra: Partial<dnsPacket.Packet> = {}): Buffer =>
    dnsPacket.encode({ type: "query", id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: "web.ns1.svc.cluster.local" }], ...extra });

  it("parses a query and answers it with the client's id, RD, and EDNS when the client sent it", () => {
    const p = parseQuery(query({ additionals: [{ type: "OPT", name: ".", udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] }));
    if (p.t !== "query") throw new Error(p.reason);
    expect(p.query.ednsPayload).toBe(4096);
    const res = dnsPacket.decode(buildResponse(p.query, { rcode: "NOERROR", authoritative: true, answers: [{ type: "A", name: "web.ns1.svc.cluster.local", ttl: 30, data: "10.0.0.1" }] }));
    expect(res).toMatchObject({ id: 4242, type: "response", flag_rd: true, flag_aa: true, flag_ra: true });
    expect(res.additionals?.[0]?.type).toBe("OPT");
  });

  it("answers undecodable queries with FORMERR and drops responses and runts", () => {
    const bad = Buffer.concat([query().subarray(0, 12), Buffer.from([0xc0, 0xff])]);
    const p = parseQuery(bad);
    expect(p.t).toBe("reply");
    if (p.t === "reply") expect(dnsPacket.decode(p.reply)).toMatchObject({ id: 4242, rcode: "FORMERR" });
    expect(parseQuery(Buffer.alloc(5)).t).toBe("drop");
    expect(parseQuery(dnsPacket.encode({ type: "response", id: 1, questions: [] })).t).toBe("drop");
    const two = dnsPacket.encode({ type: "query", id: 7, questions: [{ type: "A", name: "a" }, { type: "A", name: "b" }] });
    const p2 = parseQuery(two);
    expect(p2.t === "reply" && (dnsPacket.decode(p2.reply) as { rcode?: string }).rcode).toBe("FORMERR");
  });

  it("truncates an answer too large for a UDP client and keeps the question", () => {
    const p = parseQuery(query());
    if (p.t !== "query") throw new Error(p.reason);
    const answers = Array.from({ length: 60 }, (_, i) => ({ type: "A" as const, name: "web.ns1.svc.cluster.local", ttl: 30, data: `10.0.${i}.1` }));
    const big = buildResponse(p.query, { rcode: "NOERROR", answers });
    expect(big.length).toBeGreaterThan(512);
    const fit = dnsPacket.decode(fitForUdp(p.query, big));
    expect(fit).toMatchObject({ id: 4242, flag_tc: true, answers: [], questions: [{ name: "web.ns1.svc.cluster.local", type: "A" }] });
    expect(withId(big, 9).readUInt16BE(0)).toBe(9);
  });
});

describe("local config fields the DNS proxy reads", () => {
  it("reads a workload hostname and a service's port names and IP family, and rejects bad ones", async () => {
    const { parseLocalConfig, LocalConfigError } = await import("../../src/ztunnel/state/local-config.js");
    const data = parseLocalConfig(`
workloads:
  - { uid: u1, name: db-0, namespace: ns1, workloadIps: [10.0.0.5], hostname: db-0 }
services:
  - { name: db, namespace: ns1, hostname: db.ns1.svc.cluster.local, ports: { "5432": 0 }, portNames: { "5432": postgres }, ipFamilies: IPv4 }
`);
    expect(data.workloads[0]?.hostname).toBe("db-0");
    expect(data.services[0]).toMatchObject({ portNames: { "5432": "postgres" }, ipFamilies: "IPv4" });
    expect(() => parseLocalConfig(`services: [{ name: db, namespace: ns1, hostname: h, ports: { "80": 0 }, portNames: { "81": x } }]`)).toThrow(LocalConfigError);
    expect(() => parseLocalConfig(`services: [{ name: db, namespace: ns1, hostname: h, ports: { "80": 0 }, portNames: { "80": "Bad_Name" } }]`)).toThrow(/not a DNS label/);
  });
});
