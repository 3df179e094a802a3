import fc from "fast-check";
import { isIPv4 as netIsIPv4, isIPv6 as netIsIPv6 } from "node:net";
import { describe, expect, it } from "vitest";
import { isIPv4, isIPv6 } from "../../src/cni-contract/ip-literal.js";

// The contract's IP literal checks must answer exactly as node:net's (which the wire format used
// before): every string below is judged by both.

const same = (s: string): void => {
  expect([s, isIPv4(s)]).toEqual([s, netIsIPv4(s)]);
  expect([s, isIPv6(s)]).toEqual([s, netIsIPv6(s)]);
};

const hexGroup = fc.stringMatching(/^[0-9a-fA-F]{1,4}$/);
const octet = fc.oneof(fc.integer({ min: 0, max: 255 }).map(String), fc.stringMatching(/^[0-9]{1,4}$/));
const quad = fc.array(octet, { minLength: 3, maxLength: 5 }).map((o) => o.join("."));
// Near-valid addresses: 0 to 9 groups, maybe a '::' at any place, maybe a dotted quad, maybe a zone.
const nearV6 = fc
  .record({
    groups: fc.array(hexGroup, { maxLength: 9 }),
    gapAt: fc.option(fc.nat(9)),
    quad: fc.option(quad),
    zone: fc.option(fc.stringMatching(/^[0-9a-zA-Z.:%_-]{0,5}$/)),
  })
  .map(({ groups, gapAt, quad, zone }) => {
    const g = [...groups];
    let text = gapAt === null ? g.join(":") : `${g.slice(0, gapAt).join(":")}::${g.slice(gapAt).join(":")}`;
    if (quad !== null) text += (text === "" || text.endsWith(":") ? "" : ":") + quad;
    return zone === null ? text : `${text}%${zone}`;
  });

describe("IP literals", () => {
  it("agree with node:net on fixed cases", () => {
    for (const s of [
      "", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.1.1.1", "1.1.1", "1.1.1.1.", " 1.1.1.1", "1.1.1.1\n",
      "::", "::1", "1::", "1::1", "::ffff:10.0.0.1", "::10.0.0.1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
      "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6::1.2.3.4", "1:2:3:4:5::1.2.3.4", "1.2.3.4::", ":::", "1:::2",
      "1::2::3", ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:", "fe80::1%eth0", "fe80::1%", "fe80::1%a%b", "%eth0", "12345::", "g::1",
      "FE80::ABCD", "::1.2.3", "::01.2.3.4",
    ]) {
      same(s);
    }
  });

  it("agree with node:net on generated near-addresses and arbitrary strings", () => {
    fc.assert(fc.property(nearV6, (s) => same(s)), { numRuns: 20_000 });
    fc.assert(fc.property(quad, (s) => same(s)), { numRuns: 5_000 });
    fc.assert(fc.property(fc.stringMatching(/^[0-9a-fA-F:.%]{0,40}$/), (s) => same(s)), { numRuns: 20_000 });
  });
});
