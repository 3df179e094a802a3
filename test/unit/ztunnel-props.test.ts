import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseDuration } from "../../src/ztunnel/config.js";
import { canonicalIp, formatHostPort, parseHostPort } from "../../src/ztunnel/state/ip.js";
import { formatIdentity, makeIdentity, parseIdentity } from "../../src/ztunnel/tls/identity.js";

// Property tests of the small parsers every connection depends on.

const segment = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/);
const port = fc.integer({ min: 1, max: 65535 });

describe("properties", () => {
  it("authority: format then parse gives the canonical address back, for v4 and v6", () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), port, (ip, p) => {
        const parsed = parseHostPort(formatHostPort(ip, p));
        expect(parsed).toEqual({ ip: canonicalIp(ip), port: p });
      }),
    );
  });

  it("authority: arbitrary strings never throw, and whatever parses is a literal IP and a valid port", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        const r = parseHostPort(s);
        if (r !== undefined) {
          expect(canonicalIp(r.ip)).toBe(r.ip);
          expect(r.port).toBeGreaterThanOrEqual(1);
          expect(r.port).toBeLessThanOrEqual(65535);
        }
      }),
    );
  });

  it("identity: parse(format(id)) is id", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9.-]{1,30}$/), segment, segment, (td, ns, sa) => {
        const id = makeIdentity(td, ns, sa);
        expect(parseIdentity(formatIdentity(id))).toEqual(id);
      }),
    );
  });

  it("durations: a Go-style h/m/s/ms composition parses to its sum", () => {
    fc.assert(
      fc.property(fc.nat(48), fc.nat(59), fc.nat(59), fc.nat(999), (h, m, s, ms) => {
        const parts = [h ? `${h}h` : "", m ? `${m}m` : "", s ? `${s}s` : "", ms ? `${ms}ms` : ""].join("");
        fc.pre(parts !== "");
        expect(parseDuration(parts)).toBe(((h * 60 + m) * 60 + s) * 1000 + ms);
      }),
    );
  });
});
