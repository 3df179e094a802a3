import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { waitUntil } from "../harness/wait.js";
import { AccessLog } from "../../src/ztunnel/accesslog/access-log.js";
import { startAdminServer } from "../../src/ztunnel/admin/server.js";
import { TelemetrySink } from "../../src/ztunnel/inpod/telemetry-sink.js";
import { trafficLabels } from "../../src/ztunnel/metrics/labels.js";
import { ZtunnelMetrics } from "../../src/ztunnel/metrics/registry.js";
import { parseLocalConfig } from "../../src/ztunnel/state/local-config.js";
import { WorkloadStore } from "../../src/ztunnel/state/store.js";
import type { Telemetry } from "../../src/ztunnel/worker/messages.js";
import { WorkerTelemetry } from "../../src/ztunnel/worker/telemetry.js";

// The wiring between worker telemetry and the main thread (metrics registry, access log,
// config_dump totals), policy validation at the store, and the admin routes' argument checks.

function captureLog(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split("\n")) if (l.trim() !== "") lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: "info" }, sink), lines };
}

const dst = { name: "b", namespace: "nb", serviceAccount: "sb" };
const src = { name: "a", namespace: "na", serviceAccount: "sa" };

describe("worker telemetry → main thread", () => {
  const timers: WorkerTelemetry[] = [];
  afterEach(() => {
    for (const t of timers.splice(0)) t.close();
  });

  it("two workers' flushes add up in one series; access lines at info and warn; totals per direction", async () => {
    const metrics = new ZtunnelMetrics();
    const { log, lines } = captureLog();
    const sink = new TelemetrySink(metrics, new AccessLog(log));
    const workers = [0, 1].map((i) => {
      const t = new WorkerTelemetry((m: Telemetry) => sink.add(i, m), 60_000, { closeFlushDelayMs: 0, wantsAccess: () => true });
      timers.push(t);
      return t;
    });
    const labels = trafficLabels({ reporter: "destination", source: src, sourcePrincipal: "spiffe://cluster.local/ns/na/sa/sa", destination: dst, securityPolicy: "mutual_tls" });
    for (const [i, w] of workers.entries()) {
      w.opened();
      const meter = w.metrics.open(labels);
      meter.add(1000 * (i + 1), 10);
      w.closed({ direction: "inbound", srcAddr: "10.0.0.1:1", dstAddr: "10.0.0.2:80", bytesSent: 1000 * (i + 1), bytesRecv: 10, durationMs: 5 });
      meter.close();
    }
    // Failed one on worker 1.
    const failed = workers[1]!.metrics.open(labels);
    workers[1]!.closed({ direction: "inbound", srcAddr: "10.0.0.1:2", dstAddr: "10.0.0.2:80", bytesSent: 0, bytesRecv: 0, durationMs: 1, error: "denied", responseFlags: "DENY" });
    failed.close({ failed: true, responseFlags: "DENY" });
    // Closes flush within a turn.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const text = await metrics.metrics();
    expect(text).toMatch(/istio_tcp_received_bytes_total\{[^}]*reporter="destination"[^}]*connection_security_policy="mutual_tls"\} 3000$/m);
    expect(text).toMatch(/istio_tcp_sent_bytes_total\{[^}]*\} 20$/m);
    expect(text).toMatch(/istio_tcp_connections_failed_total\{[^}]*response_flags="DENY"[^}]*\} 1$/m);
    expect(sink.totals.inbound).toMatchObject({ opened: 3, closed: 3, failed: 1, bytesSent: 3000, bytesReceived: 20 });
    expect(lines.filter((l) => l.msg === "connection complete").map((l) => [l.level, l.worker, l.bytes_sent])).toEqual([
      [30, 0, 1000],
      [30, 1, 2000],
    ]);
    const warn = lines.find((l) => l.msg === "connection failed");
    expect(warn).toMatchObject({ level: 40, error: "denied", response_flags: "DENY", worker: 1 });
  });

  it("closes within the flush delay leave in one message; summaries nobody logs stay in the worker", async () => {
    const got: Telemetry[] = [];
    const t = new WorkerTelemetry((m) => got.push(m), 60_000, { closeFlushDelayMs: 40, wantsAccess: (failed) => failed });
    timers.push(t);
    const labels = trafficLabels({ reporter: "source" });
    for (let i = 0; i < 5; i++) {
      t.opened();
      const meter = t.metrics.open(labels);
      t.closed({ direction: "outbound", srcAddr: `10.0.0.1:${i}`, dstAddr: "10.0.0.2:80", bytesSent: 1, bytesRecv: 1, durationMs: 1, ...(i === 4 ? { error: "refused", responseFlags: "UF" } : {}) });
      meter.close(i === 4 ? { failed: true, responseFlags: "UF" } : {});
    }
    await new Promise((r) => setImmediate(r));
    expect(got).toHaveLength(0);
    // The first message after the flush delay carries all five closes.
    await waitUntil(() => got.length > 0, "the coalesced flush");
    expect(got).toHaveLength(1);
    expect(got[0]!.metrics?.series.reduce((n, s) => n + s.closed, 0)).toBe(5);
    // Only the failed connection's summary: successes are not logged at this level.
    expect(got[0]!.access.map((a) => a.srcAddr)).toEqual(["10.0.0.1:4"]);
    expect(got[0]!.active).toBe(0);
  });

  it("the heartbeat reports accepted/active with no traffic", async () => {
    const got: Telemetry[] = [];
    const t = new WorkerTelemetry((m) => got.push(m), 30);
    timers.push(t);
    t.accepted();
    t.opened();
    await waitUntil(() => got.length > 0, "a heartbeat");
    expect(got[0]).toMatchObject({ accepted: 1, active: 1 });
    expect(got[0]!.metrics).toBeUndefined();
  });
});

describe("policies are validated once, where they enter", () => {
  it("an invalid policy in the local file is refused by the parser naming the field; the store takes typed state", () => {
    const store = new WorkloadStore();
    store.replace(parseLocalConfig(`policies:\n  - name: p\n    namespace: n\n    rules: [[[{ sourceIps: ["10.0.0.0/8"] }]]]\n`), "ok");
    expect(store.version).toBe(1);
    expect(() => parseLocalConfig(`policies:\n  - name: p\n    namespace: n\n    scope: Bogus\n`, "local.yaml")).toThrow(/local\.yaml: policies\[0\]\.scope/);
    expect(store.state.policies[0]?.rules[0]?.[0]?.[0]?.sourceIps).toEqual(["10.0.0.0/8"]);
  });

  it("dryRun survives the local config parser; a non-boolean is an error naming the field", () => {
    const s = parseLocalConfig(`policies:\n  - { name: p, namespace: n, action: Deny, dryRun: true, rules: [] }\n`);
    expect(s.policies[0]?.dryRun).toBe(true);
    expect(() => parseLocalConfig(`policies:\n  - { name: p, namespace: n, dryRun: "yes", rules: [] }\n`)).toThrow(/dryRun/);
  });
});

describe("admin routes", () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((r) => (server === undefined ? r() : server.close(() => r())));
    server = undefined;
  });

  it("/logging validates the level, /listeners needs ns/name and answers 404 for an unknown pod", async () => {
    let level = "info";
    const asked: string[] = [];
    server = await startAdminServer(
      { host: "127.0.0.1", port: 0 },
      {
        configDump: async () => ({}),
        quit: () => undefined,
        setLogLevel: (l) => {
          if (l === "nope") throw new Error("unknown level");
          level = l;
          return l;
        },
        currentLogLevel: () => level,
        listeners: async (ns, name) => {
          asked.push(`${ns}/${name}`);
          return ns === "known" ? { pod: `${ns}/${name}` } : undefined;
        },
      },
      pino({ level: "silent" }),
    );
    const port = (server.address() as AddressInfo).port;
    const call = async (method: string, path: string): Promise<[number, string]> => {
      const r = await fetch(`http://127.0.0.1:${port}${path}`, { method });
      return [r.status, await r.text()];
    };
    expect((await call("POST", "/logging?level=debug"))[0]).toBe(200);
    expect(level).toBe("debug");
    expect((await call("POST", "/logging?level=nope"))[0]).toBe(400);
    expect((await call("GET", "/logging"))[1]).toMatch(/current log level is debug/);
    expect((await call("GET", "/listeners"))[0]).toBe(400);
    expect((await call("GET", "/listeners?pod=justname"))[0]).toBe(400);
    expect((await call("GET", "/listeners?pod=ns/x"))[0]).toBe(404);
    const ok = await call("GET", "/listeners?pod=known/p1");
    expect(ok[0]).toBe(200);
    expect(JSON.parse(ok[1])).toEqual({ pod: "known/p1" });
    expect(asked).toEqual(["ns/x", "known/p1"]);
  });
});
