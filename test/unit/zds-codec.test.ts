import { describe, expect, it } from "vitest";
import { decodeHello, decodeRequest, decodeResponse, encodeAck, encodeHello, encodeRequest, MAX_DATAGRAM, truncateUtf8 } from "../../src/zds/codec.js";
import { ZdsMessageTooLargeError, ZdsProtocolError } from "../../src/zds/errors.js";
import { hex } from "../fixtures/zds-memory.js";

const info = { name: "p", namespace: "ns", serviceAccount: "sa" };

// Buffer.from(h, "hex") silently drops a trailing odd nibble and stops at the first non-hex
// character: a mistyped vector would test something else. These throw instead.
function fromHex(h: string): Buffer {
  if (h.length % 2 !== 0) throw new Error(`hex vector "${h}" has odd length`);
  if (!/^[0-9a-f]*$/i.test(h)) throw new Error(`hex vector "${h}" is not hex`);
  return Buffer.from(h, "hex");
}

describe("ZDS wire vectors (Istio byte compatibility)", () => {
  it("hello V1 is 08 01", () => expect(hex(encodeHello())).toBe("0801"));
  it("success ack is 0a 00", () => expect(hex(encodeAck())).toBe("0a00"));
  it("SnapshotSent is 1a 00", () => expect(hex(encodeRequest({ type: "snapshotSent" }))).toBe("1a00"));
  it('Del{"abc"} is 12 05 12 03 61 62 63 (uid is field 2)', () => expect(hex(encodeRequest({ type: "del", uid: "abc" }))).toBe("1205120361626" + "3"));
  it("Keep uses tag 2a (field 5)", () => expect(hex(encodeRequest({ type: "keep", uid: "abc" }))).toBe("2a050a03616263"));
  it("Add carries uid = 1 and workload_info = 2 with name/namespace/service_account = 1/2/3", () => {
    expect(hex(encodeRequest({ type: "add", uid: "u", info }))).toBe("0a" + "10" + "0a0175" + "120b" + "0a0170" + "12026e73" + "1a027361");
  });
  it("error ack puts the text in Ack.error = 1", () => expect(hex(encodeAck("x"))).toBe("0a030a0178"));
});

describe("ZDS decoding", () => {
  it("round-trips every request type", () => {
    for (const r of [
      { type: "add", uid: "a-1", info },
      { type: "del", uid: "d" },
      { type: "keep", uid: "k" },
      { type: "snapshotSent" },
    ] as const) {
      expect(decodeRequest(encodeRequest(r))).toEqual(r);
    }
  });

  it("reports an Add without workload_info as info undefined", () => {
    expect(decodeRequest(fromHex("0a030a0175"))).toEqual({ type: "add", uid: "u", info: undefined });
  });

  it("skips unknown fields (forward compatibility)", () => {
    // Del{"abc"} plus an unknown varint field 9 inside DelWorkload and at the top level.
    expect(decodeRequest(fromHex("1207120361626348014801"))).toEqual({ type: "del", uid: "abc" });
  });

  // Each vector names the check it exercises, so a vector that fails for another reason (a typo
  // in its hex, say) cannot pass in its place.
  it.each([
    ["empty request", "", /WorkloadRequest carries no payload/],
    ["two payloads", "1a001a00", /carries 2 payload fields/],
    ["add and del together", "0a030a0175" + "1205120361626" + "3", /carries 2 payload fields/],
    ["truncated length", "1205120361", /WorkloadRequest\.del is truncated/],
    ["wrong wire type for a message field", "1801", /WorkloadRequest\.snapshot_sent has wire type 0, expected 2/],
    // Del{ uid: varint 1 }: tag 10 is field 2 (uid, a string) with wire type 0.
    ["wrong wire type for a string", "1202" + "1001", /DelWorkload\.uid has wire type 0, expected 2/],
    ["invalid UTF-8 in uid", "12041202c328", /DelWorkload\.uid is not valid UTF-8/],
    ["field number 0", "0000", /field number 0 is invalid/],
    ["random bytes", "ffffffffffffffffffff01", /invalid varint/],
    ["end-group wire type", "0c", /has wire type 4/],
  ])("rejects %s with a ZdsProtocolError", (_name, h, message) => {
    const bytes = fromHex(h);
    expect(() => decodeRequest(bytes)).toThrow(ZdsProtocolError);
    expect(() => decodeRequest(bytes)).toThrow(message);
  });

  it("test vectors must be whole bytes: odd-length or non-hex strings are refused", () => {
    expect(() => fromHex("120208011")).toThrow(/odd length/);
    expect(() => fromHex("12zz")).toThrow(/not hex/);
  });

  it("rejects datagrams above 1024 bytes before decoding", () => {
    const big = Buffer.alloc(MAX_DATAGRAM + 1, 0);
    expect(() => decodeRequest(big)).toThrow(/exceeds the 1024-byte limit/);
    expect(() => decodeResponse(big)).toThrow(ZdsProtocolError);
  });

  it("decodes hello and acks", () => {
    expect(decodeHello(fromHex("0801"))).toEqual({ version: 1 });
    expect(decodeHello(Buffer.alloc(0))).toEqual({ version: 0 });
    expect(decodeResponse(fromHex("0a00"))).toEqual({ error: "" });
    expect(decodeResponse(fromHex("0a030a0178"))).toEqual({ error: "x" });
    expect(() => decodeResponse(fromHex("0801"))).toThrow(ZdsProtocolError); // hello is not an ack
    expect(() => decodeHello(fromHex("0a00"))).toThrow(ZdsProtocolError); // ack is not a hello
  });
});

describe("ZDS size guard", () => {
  it("refuses to encode a request above 1024 bytes", () => {
    expect(() => encodeRequest({ type: "add", uid: "u", info: { ...info, name: "n".repeat(1100) } })).toThrow(ZdsMessageTooLargeError);
  });

  it("truncates a long error Ack to fit one datagram, keeping UTF-8 valid", () => {
    const long = "é".repeat(2000);
    const bytes = encodeAck(long);
    expect(bytes.length).toBeLessThanOrEqual(MAX_DATAGRAM);
    const back = decodeResponse(bytes).error;
    expect(back.endsWith("...(truncated)")).toBe(true);
    expect(back.startsWith("éé")).toBe(true);
    const exact = "a".repeat(MAX_DATAGRAM - 6);
    expect(decodeResponse(encodeAck(exact)).error).toBe(exact);
  });

  it("truncateUtf8 never splits a character", () => {
    expect(truncateUtf8("aé", 2)).toBe("a");
    expect(truncateUtf8("a😀b", 4)).toBe("a");
    expect(truncateUtf8("abc", 5)).toBe("abc");
  });
});
