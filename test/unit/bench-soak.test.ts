import { describe, expect, it } from "vitest";
import { flatness, type Sample } from "../../bench/lib/soak-sampler.js";
import { PolicyTimeline } from "../../bench/lib/soak-traffic.js";

// The soak's two judgements: whether a resource figure stayed flat after warm-up, and whether a
// failed connection may be blamed on the Deny policy.

function samples(node: number, values: number[], startT = 0): Sample[] {
  return values.map((v, i) => ({ t: startT + i * 5, node, rssMiB: v, fds: Math.round(v / 2) }));
}

describe("soak flatness", () => {
  it("ignores the warm-up and compares the last quarter's median (nearest rank) with the first quarter's", () => {
    const s = samples(0, [50, 80, 100, 101, 99, 100, 102, 100, 101, 103]);
    const f = flatness(s, 0, "rssMiB", 10, 10)!;
    expect(f).toMatchObject({ early: 100, late: 101, samples: 8, flat: true, min: 99, max: 103 });
  });

  it("a steady climb beyond the limit is not flat; one spike in the middle is", () => {
    expect(flatness(samples(1, [100, 104, 108, 112, 116, 120, 124, 128]), 1, "rssMiB", 0, 10)).toMatchObject({ early: 100, late: 124, flat: false });
    expect(flatness(samples(1, [100, 100, 300, 100, 100, 100, 100, 100]), 1, "rssMiB", 0, 10)?.flat).toBe(true);
  });

  it("judges one node only, and refuses to judge fewer than 4 samples", () => {
    const s = [...samples(0, [10, 10, 10, 10]), ...samples(1, [10, 10, 50])];
    expect(flatness(s, 0, "fds", 0, 10)?.flat).toBe(true);
    expect(flatness(s, 1, "fds", 0, 10)).toBeUndefined();
  });
});

describe("soak policy timeline", () => {
  it("a connection may be denied when the policy was on during its life or switched off within the grace before it started", () => {
    const t = new PolicyTimeline(3_000);
    expect(t.mayDeny(0, 100)).toBe(false);
    t.set(true, 10_000);
    t.set(false, 20_000);
    expect(t.mayDeny(5_000, 9_000)).toBe(false);
    expect(t.mayDeny(9_000, 11_000)).toBe(true);
    expect(t.mayDeny(12_000, 13_000)).toBe(true);
    expect(t.mayDeny(22_000, 22_500)).toBe(true);
    expect(t.mayDeny(23_500, 24_000)).toBe(false);
    expect(t.on).toBe(false);
  });
});
