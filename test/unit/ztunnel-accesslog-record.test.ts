import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { AccessLog, accessLogger, toAccessRecord, type ConnectionSummary } from "../../src/ztunnel/accesslog/index.js";
import { makeIdentity } from "../../src/ztunnel/tls/identity.js";

function capture(level: pino.Level = "info"): { root: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split("\n")) if (l !== "") lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const root = pino({ level, formatters: { level: (label) => ({ level: label }) } }, stream);
  return { root, lines };
}

const ok: ConnectionSummary = {
  direction: "inbound",
  srcAddr: "10.0.0.2:43210",
  srcWorkload: "sleep-1",
  srcNamespace: "client",
  srcIdentity: makeIdentity("cluster.local", "client", "sleep"),
  dstAddr: "10.0.0.1:8080",
  dstHboneAddr: "10.0.0.1:15008",
  dstService: "echo.default.svc.cluster.local",
  dstWorkload: "echo-a",
  dstNamespace: "default",
  dstIdentity: "spiffe://cluster.local/ns/default/sa/echo",
  bytesSent: 1_048_576,
  bytesRecv: 12_345,
  durationMs: 41.6,
};

describe("access log", () => {
  it("writes one info line per completed connection with DESIGN §9 fields under scope access", () => {
    const { root, lines } = capture();
    // The summary crosses the worker boundary by structured clone.
    new AccessLog(accessLogger(root)).emit(structuredClone(ok), 1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toEqual({
      level: "info",
      time: expect.any(Number),
      pid: expect.any(Number),
      hostname: expect.any(String),
      scope: "access",
      msg: "connection complete",
      worker: 1,
      "src.addr": "10.0.0.2:43210",
      "src.workload": "sleep-1",
      "src.namespace": "client",
      "src.identity": "spiffe://cluster.local/ns/client/sa/sleep",
      "dst.addr": "10.0.0.1:8080",
      "dst.hbone_addr": "10.0.0.1:15008",
      "dst.service": "echo.default.svc.cluster.local",
      "dst.workload": "echo-a",
      "dst.namespace": "default",
      "dst.identity": "spiffe://cluster.local/ns/default/sa/echo",
      direction: "inbound",
      bytes_sent: 1_048_576,
      bytes_recv: 12_345,
      duration: "42ms",
    });
  });

  it("writes failures at warn with the reason and flag, omitting what is unknown", () => {
    const { root, lines } = capture();
    new AccessLog(accessLogger(root)).emit({
      direction: "inbound",
      srcAddr: "[fd00::9]:5555",
      dstAddr: "[fd00::1]:8080",
      dstWorkload: "echo-a",
      dstNamespace: "default",
      srcIdentity: undefined,
      bytesSent: 0,
      bytesRecv: 0,
      durationMs: 0,
      error: "explicitly denied by policy default/require-mtls",
      responseFlags: "DENY",
    });
    expect(lines).toHaveLength(1);
    const l = lines[0] ?? {};
    expect(l).toMatchObject({ level: "warn", scope: "access", msg: "connection failed", error: "explicitly denied by policy default/require-mtls", response_flags: "DENY", "src.addr": "[fd00::9]:5555" });
    expect("src.identity" in l).toBe(false);
    expect("dst.service" in l).toBe(false);
    expect("worker" in l).toBe(false);
  });

  it("builds nothing when the level is disabled", () => {
    const { root, lines } = capture("warn");
    const log = new AccessLog(accessLogger(root));
    expect(log.wants(false)).toBe(false);
    expect(log.wants(true)).toBe(true);
    // Any field read would throw: the success record must not even be looked at.
    const trap = new Proxy({ error: undefined } as unknown as ConnectionSummary, {
      get(_target, prop) {
        if (prop === "error") return undefined;
        throw new Error(`read ${String(prop)} of a record that should not be built`);
      },
    });
    log.emit(trap);
    expect(lines).toHaveLength(0);
    root.level = "silent";
    log.emit({ ...ok, error: "x" });
    expect(lines).toHaveLength(0);
  });

  it("formats identities given as objects or strings, and treats empty strings as absent", () => {
    const r = toAccessRecord({ ...ok, srcIdentity: "", dstIdentity: makeIdentity("example.org", "a", "b"), durationMs: -3 });
    expect(r["src.identity"]).toBeUndefined();
    expect(r["dst.identity"]).toBe("spiffe://example.org/ns/a/sa/b");
    expect(r.duration).toBe("0ms");
  });
});
