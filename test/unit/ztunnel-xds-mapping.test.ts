import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { WorkloadStore } from "../../src/ztunnel/state/store.js";
import { mapAddress } from "../../src/ztunnel/xds/map-address.js";
import { mapAuthorization } from "../../src/ztunnel/xds/map-authorization.js";
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, decodeAs, encodeAs, xdsTypes } from "../../src/ztunnel/xds/proto.js";
import { XdsResources } from "../../src/ztunnel/xds/xds-source.js";
import { ipBytes } from "../harness/fake-istiod/index.js";

// Every field of istio.workload.Address and istio.security.Authorization, encoded to wire bytes,
// decoded and mapped into our model, compared with reviewed golden JSON (UPDATE_GOLDEN=1
// rewrites them). Then fuzzed resources: whatever istiod sends, the client never throws; it
// applies or refuses each resource.

const dir = fileURLToPath(new URL("../golden/xds/", import.meta.url));
const update = process.env.UPDATE_GOLDEN === "1";

function golden(name: string, actual: unknown): void {
  const path = `${dir}${name}`;
  const text = `${JSON.stringify(actual, null, 2)}\n`;
  if (update) writeFileSync(path, text);
  if (!existsSync(path)) throw new Error(`golden ${name} is missing; run with UPDATE_GOLDEN=1 and review it`);
  expect(text).toBe(readFileSync(path, "utf8"));
}

const roundTrip = (type: "address" | "authorization", obj: Record<string, unknown>): Record<string, unknown> => {
  const t = xdsTypes()[type];
  return decodeAs(t, encodeAs(t, obj));
};

const FULL_WORKLOAD = {
  workload: {
    name: "web-0",
    namespace: "shop",
    addresses: [ipBytes("10.1.2.3"), ipBytes("fd00::1:2")],
    network: "net-a",
    tunnel_protocol: "HBONE",
    trust_domain: "example.org",
    service_account: "web",
    waypoint: { address: { network: "net-a", address: ipBytes("10.9.0.1") }, hbone_mtls_port: 15009 },
    node: "node-7",
    canonical_name: "web",
    canonical_revision: "v2",
    workload_type: "POD",
    workload_name: "web",
    native_tunnel: true,
    authorization_policies: ["shop/allow-frontend"],
    status: "UNHEALTHY",
    cluster_id: "east",
    network_gateway: { hostname: { namespace: "istio-system", hostname: "eastwest.example.org" }, hbone_mtls_port: 15008 },
    uid: "east//Pod/shop/web-0",
    hostname: "web-0",
    services: { "shop/web.shop.svc.cluster.local": { ports: [{ service_port: 80, target_port: 8080 }, { service_port: 443, target_port: 0 }] } },
    application_tunnel: { protocol: "PROXY", port: 15088 },
    locality: { region: "eu", zone: "eu-1", subzone: "a" },
    network_mode: "HOST_NETWORK",
    capacity: { value: 3 },
  },
};

const FULL_SERVICE = {
  service: {
    name: "web",
    namespace: "shop",
    hostname: "web.shop.svc.cluster.local",
    addresses: [{ network: "net-a", address: ipBytes("10.96.0.10") }, { network: "", address: ipBytes("fd00:96::a") }],
    ports: [{ service_port: 80, target_port: 8080, app_protocol: "HTTP11" }, { service_port: 9000, target_port: 0 }],
    subject_alt_names: ["spiffe://example.org/ns/shop/sa/web"],
    waypoint: { hostname: { namespace: "shop", hostname: "waypoint.shop.svc.cluster.local" }, hbone_mtls_port: 15008 },
    load_balancing: { routing_preference: ["NETWORK", "REGION"], mode: "STRICT", health_policy: "ALLOW_ALL" },
    ip_families: "DUAL",
  },
};

const FULL_POLICY = {
  name: "allow-frontend",
  namespace: "shop",
  scope: "WORKLOAD_SELECTOR",
  action: "ALLOW",
  dry_run: true,
  rules: [
    {
      clauses: [
        {
          matches: [
            {
              namespaces: [{ exact: "front" }, { prefix: "front-" }],
              not_namespaces: [{ suffix: "-test" }],
              principals: [{ presence: {} }],
              not_principals: [{ exact: "example.org/ns/front/sa/bad" }],
              source_ips: [{ address: ipBytes("10.0.0.0"), length: 8 }, { address: ipBytes("fd00::"), length: 16 }],
              not_source_ips: [{ address: ipBytes("10.0.0.7"), length: 32 }],
              destination_ips: [{ address: ipBytes("10.1.2.3"), length: 32 }],
              not_destination_ips: [{ address: ipBytes("10.1.2.4"), length: 32 }],
              destination_ports: [8080, 9090],
              not_destination_ports: [15000],
              service_accounts: [{ namespace: "front", serviceAccount: "web" }],
              not_service_accounts: [{ namespace: "front", serviceAccount: "admin" }],
            },
          ],
        },
        { matches: [{ destination_ports: [8080] }] },
      ],
    },
    { clauses: [] },
  ],
};

describe("istiod resources → our model, field by field", () => {
  it("Workload: every field", () => {
    golden("workload.json", mapAddress("east//Pod/shop/web-0", roundTrip("address", FULL_WORKLOAD)));
  });

  it("Service: every field", () => {
    golden("service.json", mapAddress("shop/web.shop.svc.cluster.local", roundTrip("address", FULL_SERVICE)));
  });

  it("Authorization: every field", () => {
    golden("authorization.json", mapAuthorization("shop/allow-frontend", roundTrip("authorization", FULL_POLICY)));
  });

  it("defaults: an almost empty workload takes Istio's defaults (default service account, cluster.local, HEALTHY, plain TCP)", () => {
    const m = mapAddress("c//Pod/ns/p", roundTrip("address", { workload: { uid: "c//Pod/ns/p", name: "p", namespace: "ns" } }));
    expect(m).toMatchObject({ kind: "workload", workload: { serviceAccount: "default", trustDomain: "cluster.local", status: "Healthy", protocol: "TCP", workloadIps: [], network: "" } });
  });

  it.each([
    ["a workload whose uid is not its resource name", "other", { workload: { uid: "c//Pod/ns/p", name: "p", namespace: "ns" } }, /differs from its resource name/],
    ["a 5-byte address", "c//Pod/ns/p", { workload: { uid: "c//Pod/ns/p", name: "p", namespace: "ns", addresses: [Buffer.from([1, 2, 3, 4, 5])] } }, /5 bytes/],
    ["a service port 0", "ns/h", { service: { namespace: "ns", hostname: "h", ports: [{ service_port: 0, target_port: 1 }] } }, /not a port/],
    ["an empty Address", "x", {}, /neither a workload nor a service/],
  ])("refuses %s (named in the error)", (_what, name, obj, re) => {
    expect(() => mapAddress(name, roundTrip("address", obj))).toThrow(re);
  });

  it.each([
    ["an empty prefix", { matches: [{ principals: [{ prefix: "" }] }] }, /prefix is empty/],
    ["a StringMatch with no kind", { matches: [{ namespaces: [{}] }] }, /no match type/],
    ["a prefix length past the address", { matches: [{ source_ips: [{ address: ipBytes("10.0.0.0"), length: 33 }] }] }, /not a prefix length/],
  ])("refuses a policy with %s", (_what, clause, re) => {
    const p = { name: "p", namespace: "ns", rules: [{ clauses: [clause] }] };
    expect(() => mapAuthorization("ns/p", roundTrip("authorization", p))).toThrow(re);
  });
});

describe("fuzzed resources never crash the client", () => {
  const resources = (): XdsResources => new XdsResources(new WorkloadStore(), "fuzz", pino({ level: "silent" }));

  it("random bytes as Address and Authorization payloads: each refused or applied, never thrown", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ name: fc.string({ maxLength: 20 }), bytes: fc.uint8Array({ maxLength: 200 }), auth: fc.boolean() }), { maxLength: 8 }), (items) => {
        const r = resources();
        for (const it of items) {
          const typeUrl = it.auth ? AUTHORIZATION_TYPE_URL : ADDRESS_TYPE_URL;
          const rejected = r.apply({ typeUrl, nonce: "1", systemVersionInfo: "", removed: [], resources: [{ name: it.name, version: "1", typeUrl, value: Buffer.from(it.bytes) }] });
          expect(rejected.length).toBeLessThanOrEqual(1);
        }
      }),
      { numRuns: 400 },
    );
  });

  it("mutated valid resources (one byte flipped or truncated): never thrown", () => {
    const valid = [encodeAs(xdsTypes().address, FULL_WORKLOAD), encodeAs(xdsTypes().address, FULL_SERVICE), encodeAs(xdsTypes().authorization, FULL_POLICY)];
    fc.assert(
      fc.property(fc.nat(2), fc.nat(10_000), fc.integer({ min: 1, max: 255 }), fc.boolean(), (which, at, xor, truncate) => {
        const base = Buffer.from(valid[which]!);
        const pos = at % base.length;
        const bytes = truncate ? base.subarray(0, pos) : (base.writeUInt8((base[pos] ?? 0) ^ xor, pos), base);
        const typeUrl = which === 2 ? AUTHORIZATION_TYPE_URL : ADDRESS_TYPE_URL;
        const name = which === 0 ? "east//Pod/shop/web-0" : which === 1 ? "shop/web.shop.svc.cluster.local" : "shop/allow-frontend";
        resources().apply({ typeUrl, nonce: "1", systemVersionInfo: "", removed: [name], resources: [{ name, version: "1", typeUrl, value: bytes }] });
      }),
      { numRuns: 1000 },
    );
  });
});
