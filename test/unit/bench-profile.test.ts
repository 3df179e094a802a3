import { describe, expect, it } from "vitest";
import { categoryOf, combine, parseCpuProfile, profileFileIds, renderCategories, renderTop, summarize, type CpuProfile } from "../../bench/lib/cpuprofile.js";
import { parseOptions } from "../../bench/lib/options.js";

// A V8 profile in miniature: (root) → idle / GC / writev / our h2 reader / node:events emit.
function profile(): CpuProfile {
  const frame = (functionName: string, url = "", lineNumber = 0) => ({ functionName, url, lineNumber });
  return {
    nodes: [
      { id: 1, callFrame: frame("(root)") },
      { id: 2, callFrame: frame("(idle)") },
      { id: 3, callFrame: frame("(garbage collector)") },
      { id: 4, callFrame: frame("writev") },
      { id: 5, callFrame: frame("push", "file:///repo/dist/src/ztunnel/proxy/h2/frame-reader.js", 41) },
      { id: 6, callFrame: frame("emit", "node:events", 500) },
      // The same function reached from another stack: one row with both nodes' time.
      { id: 7, callFrame: frame("writev") },
    ],
    // µs before each sample: 10 ms idle, 2 ms GC, 5 + 1 ms writev, 1.5 ms push, 0.5 ms emit.
    samples: [2, 3, 4, 5, 6, 7],
    timeDeltas: [10_000, 2_000, 5_000, 1_500, 500, 1_000],
    startTime: 0,
    endTime: 20_000,
  };
}

describe("CPU profile summary", () => {
  it("self time per function and category as a share of busy (non-idle) time", () => {
    const s = summarize(profile(), "node1 ztunnel, worker thread 1", 3);
    expect(s.busyMs).toBe(10);
    expect(s.wallMs).toBe(20);
    expect(s.top).toEqual([
      { name: "writev", where: "native", category: categoryOf({ functionName: "writev", url: "", lineNumber: 0 }), ms: 6, pct: 60 },
      { name: "(garbage collector)", where: "native", category: "GC", ms: 2, pct: 20 },
      { name: "push", where: "h2/frame-reader.js:42", category: "our HTTP/2 layer (proxy/h2)", ms: 1.5, pct: 15 },
    ]);
    expect(Object.fromEntries(s.categories.map((c) => [c.name, c.pct]))).toMatchObject({ GC: 20, "our HTTP/2 layer (proxy/h2)": 15, "Node streams, net, events": 5 });
  });

  it("categories: node:http2, node:tls, our relay, other dist code, other node internals", () => {
    const c = (functionName: string, url: string): string => categoryOf({ functionName, url, lineNumber: 0 });
    expect(c("onSessionRead", "node:internal/http2/core")).toBe("HTTP/2 (node:http2)");
    expect(c("onStreamRead", "node:_tls_wrap")).toBe("TLS (node:tls JS side)");
    expect(c("pump", "file:///r/dist/src/ztunnel/proxy/relay.js")).toMatch(/^our relay/);
    expect(c("x", "file:///r/dist/src/ztunnel/worker/outbound.js")).toMatch(/^our code, other/);
    expect(c("wrapSafe", "node:internal/modules/cjs/loader")).toMatch(/^other Node internals/);
    expect(c("connect", "")).toMatch(/^other native calls/);
    expect(c("(program)", "")).toMatch(/^native, outside JS/);
  });

  it("a window on the sample clock keeps only the samples inside it (start-up left out)", () => {
    // Sample times: 10, 12, 17, 18.5, 19, 20 ms after startTime 0 (µs on V8's monotonic clock).
    const s = summarize(profile(), "t", 5, [11_000, 18_600]);
    expect(s.busyMs).toBe(8.5); // GC 2 + writev 5 + push 1.5
    expect(s.wallMs).toBe(7.6);
    expect(s.top.map((f) => f.name)).toEqual(["writev", "(garbage collector)", "push"]);
  });

  it("combines threads by summing each category", () => {
    const a = summarize(profile(), "a", 5);
    const all = combine("both", [a, a]);
    expect(all.busyMs).toBe(20);
    expect(all.categories.find((x) => x.name === "GC")).toEqual({ name: "GC", ms: 4, pct: 20 });
  });

  it("renders tables sorted by time, and rejects what is not a profile", () => {
    const s = summarize(profile(), "t", 2);
    expect(renderCategories(s).split("\n")[2]).toMatch(/^\| native socket writes .* \| 6 \| 60 \|$/);
    expect(renderTop(s).split("\n")).toHaveLength(4);
    expect(() => parseCpuProfile("{}", "x.cpuprofile")).toThrow(/not a V8 CPU profile/);
    expect(() => parseCpuProfile("nope", "x.cpuprofile")).toThrow(/not JSON/);
    expect(parseCpuProfile(JSON.stringify(profile()), "p").samples).toHaveLength(6);
  });

  it("profile file names give the pid and the thread (0 = main)", () => {
    expect(profileFileIds("CPU.20261207.175306.7888.2.003.cpuprofile")).toEqual({ pid: 7888, thread: 2 });
    expect(profileFileIds("summary.md")).toBeUndefined();
  });
});

describe("--paths", () => {
  it("defaults to every path, takes a subset, rejects unknown ones", () => {
    expect([...parseOptions([], "/r").paths]).toEqual(["raw", "stunnel", "nodetls", "nodetcp", "hbone", "passthrough", "inboundPlain"]);
    expect([...parseOptions(["--paths", "hbone,passthrough"], "/r").paths]).toEqual(["hbone", "passthrough"]);
    expect(() => parseOptions(["--paths", "hbone,quic"], "/r")).toThrow(/unknown path "quic"/);
    expect(() => parseOptions(["--paths", ","], "/r")).toThrow(/at least one path/);
  });
});
