import { describe, expect, it } from "vitest";
import { decodeAs, encodeAs, xdsTypes } from "../../src/ztunnel/xds/proto.js";
import { stringStruct } from "../../src/ztunnel/xds/struct.js";
import { mapAddress } from "../../src/ztunnel/xds/map-address.js";

// Interop by recorded byte vectors, annotated so each byte can be checked by hand against the
// protobuf wire format (tag = field number << 3 | wire type; 2 = length-delimited, 0 = varint)
// and the field numbers of DESIGN §13: what we send istiod, and istiod's answers decoded.

const hex = (...parts: string[]): string => parts.join("").replace(/\s+/g, "");
const ascii = (s: string): string => Buffer.from(s, "utf8").toString("hex");
const ADDRESS = "type.googleapis.com/istio.workload.Address"; // 42 bytes = 0x2a

describe("xDS and CA messages on the wire", () => {
  it("an ACK: type_url (field 2) and response_nonce (field 6), nothing else", () => {
    const bytes = encodeAs(xdsTypes().deltaRequest, { type_url: ADDRESS, response_nonce: "7" });
    expect(bytes.toString("hex")).toBe(hex("12 2a", ascii(ADDRESS), "32 01 37"));
  });

  it("a NACK: error_detail (field 7) = google.rpc.Status { code (1) = 3, message (2) }", () => {
    const bytes = encodeAs(xdsTypes().deltaRequest, { type_url: ADDRESS, response_nonce: "8", error_detail: { code: 3, message: "ns/x: bad" } });
    expect(bytes.toString("hex")).toBe(hex("12 2a", ascii(ADDRESS), "32 01 38", "3a 0d", "08 03", "12 09", ascii("ns/x: bad")));
  });

  it("the first request: node (1) { id (1), cluster (2), metadata (3) Struct }, type_url (2), initial_resource_versions (5)", () => {
    const bytes = encodeAs(xdsTypes().deltaRequest, {
      node: { id: "ztunnel~1.2.3.4~z.ns~ns.svc.cluster.local", cluster: "K", metadata: stringStruct({ A: "b" }) },
      type_url: ADDRESS,
      initial_resource_versions: { w: "3" },
    });
    const id = "ztunnel~1.2.3.4~z.ns~ns.svc.cluster.local"; // 41 bytes = 0x29
    // Struct { fields (1): map entry { key (1) "A", value (2) Value { string_value (3) "b" } } }
    const struct = hex("0a 08", "0a 01 41", "12 03", "1a 01 62");
    const node = hex("0a 29", ascii(id), "12 01 4b", "1a 0a", struct);
    expect(bytes.toString("hex")).toBe(hex("0a 3a", node, "12 2a", ascii(ADDRESS), "2a 06", "0a 01 77", "12 01 33"));
  });

  it("a CA request: csr (1), validity_duration (3, varint), metadata (4) with ImpersonatedIdentity", () => {
    const bytes = encodeAs(xdsTypes().caRequest, { csr: "P", validity_duration: 86_400, metadata: stringStruct({ ImpersonatedIdentity: "s" }) });
    // 86400 = 0x15180 → varint 80 a3 05
    const entry = hex("0a 14", ascii("ImpersonatedIdentity"), "12 03", "1a 01 73");
    expect(bytes.toString("hex")).toBe(hex("0a 01 50", "18 80a305", "22 1d", "0a 1b", entry));
  });

  it("istiod's response decodes: resources (2) { version (1), resource (2) Any, name (3) }, type_url (4), nonce (5), removed_resources (6)", () => {
    // Workload { name (1) "p", namespace (2) "ns", addresses (3) 0a000001, uid (20: tag a2 01) "u" }
    const workload = hex("0a 01 70", "12 02 6e73", "1a 04 0a000001", "a201 01 75");
    const address = hex("0a 11", workload); // Address { workload (1) }
    const any = hex("0a 2a", ascii(ADDRESS), "12 13", address);
    const resource = hex("0a 01 31", "12 41", any, "1a 01 75");
    const bytes = Buffer.from(hex("12 49", resource, "22 2a", ascii(ADDRESS), "2a 01 39", "32 03 6f6c64"), "hex");
    const r = decodeAs(xdsTypes().deltaResponse, bytes) as { resources: Array<{ name: string; version: string; resource: { type_url: string; value: Buffer } }>; type_url: string; nonce: string; removed_resources: string[] };
    expect(r.type_url).toBe(ADDRESS);
    expect(r.nonce).toBe("9");
    expect(r.removed_resources).toEqual(["old"]);
    expect(r.resources[0]).toMatchObject({ name: "u", version: "1" });
    const mapped = mapAddress("u", decodeAs(xdsTypes().address, r.resources[0]!.resource.value));
    expect(mapped).toMatchObject({ kind: "workload", workload: { uid: "u", name: "p", namespace: "ns", workloadIps: ["10.0.0.1"] } });
  });

  it("istiod's CA response decodes: cert_chain (1) repeated", () => {
    const r = decodeAs(xdsTypes().caResponse, Buffer.from(hex("0a 01 61", "0a 01 62"), "hex"));
    expect(r.cert_chain).toEqual(["a", "b"]);
  });
});
