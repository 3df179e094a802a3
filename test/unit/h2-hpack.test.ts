import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeInt, HpackDecoder, HpackError } from "../../src/ztunnel/proxy/h2/hpack-decoder.js";
import { encodeInt, HpackEncoder, type HuffmanMode } from "../../src/ztunnel/proxy/h2/hpack-encoder.js";
import type { HeaderField } from "../../src/ztunnel/proxy/h2/hpack-table.js";
import { huffmanDecode, huffmanEncode, huffmanLength } from "../../src/ztunnel/proxy/h2/huffman.js";

// RFC 7541 Appendix C, byte for byte: the decoder must read every example, and the encoder
// (forced to the same string form) must write exactly the published bytes, evictions included.

const entrySizeOf = (name: string, value: string): number => name.length + value.length + 32;
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

const REQ1: HeaderField[] = [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]];
const REQ2: HeaderField[] = [...REQ1, ["cache-control", "no-cache"]];
const REQ3: HeaderField[] = [[":method", "GET"], [":scheme", "https"], [":path", "/index.html"], [":authority", "www.example.com"], ["custom-key", "custom-value"]];
const DATE21 = "Mon, 21 Oct 2013 20:13:21 GMT";
const LOC = "https://www.example.com";
const RES1: HeaderField[] = [[":status", "302"], ["cache-control", "private"], ["date", DATE21], ["location", LOC]];
const RES2: HeaderField[] = [[":status", "307"], ["cache-control", "private"], ["date", DATE21], ["location", LOC]];
const RES3: HeaderField[] = [
  [":status", "200"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:22 GMT"], ["location", LOC],
  ["content-encoding", "gzip"], ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
];

interface Sequence {
  name: string;
  tableSize: number;
  huffman: HuffmanMode;
  steps: Array<{ headers: HeaderField[]; wire: string; tableAfter: number }>;
}

const SEQUENCES: Sequence[] = [
  {
    name: "C.3 requests without Huffman",
    tableSize: 4096,
    huffman: "never",
    steps: [
      { headers: REQ1, wire: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", tableAfter: 57 },
      { headers: REQ2, wire: "8286 84be 5808 6e6f 2d63 6163 6865", tableAfter: 110 },
      { headers: REQ3, wire: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65", tableAfter: 164 },
    ],
  },
  {
    name: "C.4 requests with Huffman",
    tableSize: 4096,
    huffman: "always",
    steps: [
      { headers: REQ1, wire: "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", tableAfter: 57 },
      { headers: REQ2, wire: "8286 84be 5886 a8eb 1064 9cbf", tableAfter: 110 },
      { headers: REQ3, wire: "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf", tableAfter: 164 },
    ],
  },
  {
    name: "C.5 responses without Huffman, 256-octet table (evictions)",
    tableSize: 256,
    huffman: "never",
    steps: [
      {
        headers: RES1,
        wire: "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        tableAfter: 222,
      },
      { headers: RES2, wire: "4803 3330 37c1 c0bf", tableAfter: 222 },
      {
        headers: RES3,
        wire: "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
        tableAfter: 215,
      },
    ],
  },
  {
    name: "C.6 responses with Huffman, 256-octet table (evictions)",
    tableSize: 256,
    huffman: "always",
    steps: [
      {
        headers: RES1,
        wire: "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        tableAfter: 222,
      },
      { headers: RES2, wire: "4883 640e ffc1 c0bf", tableAfter: 222 },
      {
        headers: RES3,
        wire: "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        tableAfter: 215,
      },
    ],
  },
];

describe("HPACK: RFC 7541 Appendix C", () => {
  it("C.1 integers", () => {
    const out = Buffer.alloc(8);
    expect(out.subarray(0, encodeInt(out, 0, 10, 5, 0))).toEqual(hex("0a"));
    expect(out.subarray(0, encodeInt(out, 0, 1337, 5, 0))).toEqual(hex("1f9a0a"));
    expect(out.subarray(0, encodeInt(out, 0, 42, 8, 0))).toEqual(hex("2a"));
    expect(decodeInt(hex("1f9a0a"), 0, 5)).toEqual({ value: 1337, next: 3 });
    expect(decodeInt(hex("ea"), 0, 5)).toEqual({ value: 10, next: 1 });
  });

  it("C.2 single literals: with, without and never indexed, and indexed", () => {
    const d = new HpackDecoder();
    expect(d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")).headers).toEqual([["custom-key", "custom-header"]]);
    expect(d.tableSize).toBe(55);
    expect(d.decode(hex("040c 2f73 616d 706c 652f 7061 7468")).headers).toEqual([[":path", "/sample/path"]]);
    expect(d.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74")).headers).toEqual([["password", "secret"]]);
    expect(d.decode(hex("82")).headers).toEqual([[":method", "GET"]]);
    expect(d.tableSize).toBe(55);
    const e = new HpackEncoder(4096, { huffman: "never", sensitive: new Set(["password"]) });
    expect(e.encode([["password", "secret"]])).toEqual(hex("1008 7061 7373 776f 7264 0673 6563 7265 74"));
    expect(e.tableSize).toBe(0);
  });

  it("unindexed names: literal without indexing, plain string, table untouched (C.2.2's form)", () => {
    const e = new HpackEncoder(4096, { unindexed: new Set([":path", "forwarded"]) });
    // C.2.2: ":path: /sample/path" as a literal without indexing, static name index 4.
    expect(e.encode([[":path", "/sample/path"]])).toEqual(hex("040c 2f73 616d 706c 652f 7061 7468"));
    const block = e.encode([[":method", "CONNECT"], ["forwarded", 'for="10.0.0.5:40000"']]);
    expect(e.tableSize).toBe(entrySizeOf(":method", "CONNECT"));
    const d = new HpackDecoder();
    expect(d.decode(block).headers).toEqual([[":method", "CONNECT"], ["forwarded", 'for="10.0.0.5:40000"']]);
    expect(d.tableSize).toBe(e.tableSize);
  });

  it("a literal name is encoded in the string form of each encoder's mode, every block alike", () => {
    const forwarded = (i: number): [string, string][] => [["forwarded", `for="10.0.0.5:${40000 + i}"`]];
    const modes = ["never", "always", "shorter"] as const;
    const firsts = modes.map((huffman) => new HpackEncoder(4096, { huffman, unindexed: new Set(["forwarded"]) }).encode(forwarded(0)));
    // Name octets: "forwarded" is 9 raw bytes, 7 as Huffman ("always" and, being shorter, "shorter").
    expect(firsts.map((b) => b[1])).toEqual([0x09, 0x87, 0x87]);
    for (const huffman of modes) {
      const e = new HpackEncoder(4096, { huffman, unindexed: new Set(["forwarded"]) });
      const d = new HpackDecoder();
      for (let i = 0; i < 3; i++) {
        const block = e.encode(forwarded(i));
        expect(block.subarray(0, 2 + (block[1] & 0x7f))).toEqual(firsts[modes.indexOf(huffman)]?.subarray(0, 2 + (block[1] & 0x7f)));
        expect(d.decode(block).headers).toEqual(forwarded(i));
      }
    }
  });

  for (const seq of SEQUENCES) {
    it(`${seq.name}: decoder`, () => {
      const d = new HpackDecoder(seq.tableSize);
      for (const step of seq.steps) {
        expect(d.decode(hex(step.wire))).toEqual({ headers: step.headers, oversize: false });
        expect(d.tableSize).toBe(step.tableAfter);
      }
    });
    it(`${seq.name}: encoder writes the published bytes`, () => {
      const e = new HpackEncoder(seq.tableSize, { huffman: seq.huffman });
      for (const step of seq.steps) {
        expect(e.encode(step.headers).toString("hex")).toBe(hex(step.wire).toString("hex"));
        expect(e.tableSize).toBe(step.tableAfter);
      }
    });
  }
});

describe("HPACK: errors and limits", () => {
  const bad: Array<[string, string]> = [
    ["index 0", "80"],
    ["index beyond the dynamic table", "be"],
    ["literal name index beyond the tables", "0f3000"],
    ["table size update above the advertised size", "3fe21f"],
    ["table size update after a field", "8220"],
    ["Huffman padding of zeros", "018100"],
    ["Huffman padding longer than 7 bits", "0182ffff"],
    ["Huffman EOS", "0184ffffffff"],
    ["truncated literal", "40"],
    ["string longer than the block", "00057465"],
    ["integer overflow", "1fffffffffff0f"],
  ];
  for (const [name, wire] of bad) {
    it(`refuses ${name}`, () => {
      expect(() => new HpackDecoder().decode(hex(wire))).toThrow(HpackError);
    });
  }

  it("decodes an oversize header list to the end, keeping the table in step, but drops its fields", () => {
    const enc = new HpackEncoder();
    const dec = new HpackDecoder(4096, 100);
    const big: HeaderField[] = [[":method", "CONNECT"], ["x-a", "v".repeat(40)], ["x-b", "w".repeat(40)]];
    const r = dec.decode(enc.encode(big));
    expect(r).toEqual({ headers: [], oversize: true });
    // Both entries went into the table, so the next block referencing them decodes.
    expect(dec.decode(enc.encode([["x-a", "v".repeat(40)]]))).toEqual({ headers: [["x-a", "v".repeat(40)]], oversize: false });
  });

  it("announces a lowered table size (smallest, then final) at the start of the next block", () => {
    const enc = new HpackEncoder(4096);
    const dec = new HpackDecoder(4096);
    dec.decode(enc.encode([["x-k", "1"]]));
    enc.setMaxTableSize(0);
    enc.setMaxTableSize(512);
    const block = enc.encode([["x-k", "1"]]);
    expect(block.subarray(0, 1)).toEqual(hex("20")); // size 0 first: everything evicted
    expect(dec.decode(block).headers).toEqual([["x-k", "1"]]);
    expect(dec.tableSize).toBe(enc.tableSize);
  });
});

describe("HPACK: properties", () => {
  it("Huffman round-trips any bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (arr) => {
        const b = Buffer.from(arr);
        const out = Buffer.alloc(huffmanLength(b));
        expect(huffmanEncode(b, out, 0)).toBe(out.length);
        expect(huffmanDecode(out)).toEqual(b);
      }),
    );
  });

  it("encoder → decoder round-trips header lists with one shared table state", () => {
    const name = fc.stringMatching(/^[a-z0-9-]{1,20}$/);
    const value = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 200 });
    fc.assert(
      fc.property(fc.array(fc.array(fc.tuple(name, value), { maxLength: 12 }), { maxLength: 8 }), fc.integer({ min: 0, max: 4096 }), (blocks, size) => {
        const enc = new HpackEncoder(size);
        const dec = new HpackDecoder(size);
        for (const headers of blocks) {
          expect(dec.decode(enc.encode(headers)).headers).toEqual(headers);
          expect(dec.tableSize).toBe(enc.tableSize);
        }
      }),
    );
  });

  it("never throws anything but HpackError on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (arr) => {
        try {
          new HpackDecoder(4096, 8192).decode(Buffer.from(arr));
        } catch (err) {
          expect(err).toBeInstanceOf(HpackError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
