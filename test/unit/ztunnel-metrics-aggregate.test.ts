import { setImmediate as tick } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { waitUntil } from "../harness/wait.js";
import {
  MetricsAccumulator,
  startFlushLoop,
  TRAFFIC_LABEL_NAMES,
  trafficLabels,
  ZtunnelMetrics,
  type MetricsDelta,
  type TrafficLabels,
} from "../../src/ztunnel/metrics/index.js";

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] ?? ""] = (l[2] ?? "").replace(/\\(.)/g, "$1");
    out.push({ name: m[1] ?? "", labels, value: Number(m[3]) });
  }
  return out;
}

function valueOf(samples: Sample[], name: string, match: Partial<Record<string, string>> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

const echoA = { name: "echo-a", namespace: "default", serviceAccount: "echo", trustDomain: "cluster.local", labels: { app: "echo", version: "v1" } };
const sleep = { name: "sleep-1", namespace: "client", serviceAccount: "sleep", trustDomain: "cluster.local" };
const svc = { hostname: "echo.default.svc.cluster.local", name: "echo", namespace: "default" };

describe("traffic labels", () => {
  it("derive Istio's label values from workloads, with unknown and - defaults", () => {
    const l = trafficLabels({
      reporter: "destination",
      source: sleep,
      sourcePrincipal: "spiffe://cluster.local/ns/client/sa/sleep",
      destination: echoA,
      destinationService: svc,
      securityPolicy: "mutual_tls",
    });
    expect(l).toEqual({
      reporter: "destination",
      source_workload: "sleep-1",
      source_canonical_service: "sleep-1",
      source_canonical_revision: "latest",
      source_workload_namespace: "client",
      source_principal: "spiffe://cluster.local/ns/client/sa/sleep",
      source_app: "sleep-1",
      source_version: "latest",
      source_cluster: "Kubernetes",
      destination_service: "echo.default.svc.cluster.local",
      destination_service_namespace: "default",
      destination_service_name: "echo",
      destination_workload: "echo-a",
      destination_canonical_service: "echo",
      destination_canonical_revision: "v1",
      destination_workload_namespace: "default",
      destination_principal: "spiffe://cluster.local/ns/default/sa/echo",
      destination_app: "echo",
      destination_version: "v1",
      destination_cluster: "Kubernetes",
      request_protocol: "tcp",
      response_flags: "-",
      connection_security_policy: "mutual_tls",
    });
    expect(Object.keys(l)).toEqual([...TRAFFIC_LABEL_NAMES]);
  });

  it("a plaintext connection from an unknown source has no principal", () => {
    const l = trafficLabels({ reporter: "destination", destination: echoA });
    expect(l.source_workload).toBe("unknown");
    expect(l.source_principal).toBe("unknown");
    expect(l.source_cluster).toBe("unknown");
    expect(l.connection_security_policy).toBe("unknown");
  });
});

// Deterministic pseudo-random workload (no flakiness, reproducible totals).
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

describe("worker accumulators → main registry", () => {
  it("several workers' deltas add up to exact totals in the exposition text", async () => {
    const rnd = lcg(42);
    const labelSets: TrafficLabels[] = [
      trafficLabels({ reporter: "source", source: sleep, sourcePrincipal: "spiffe://cluster.local/ns/client/sa/sleep", destination: echoA, destinationService: svc, securityPolicy: "mutual_tls" }),
      trafficLabels({ reporter: "destination", source: sleep, sourcePrincipal: "spiffe://cluster.local/ns/client/sa/sleep", destination: echoA, securityPolicy: "mutual_tls" }),
      trafficLabels({ reporter: "destination", destination: echoA }),
    ];
    const workers = [new MetricsAccumulator(), new MetricsAccumulator(), new MetricsAccumulator()];
    const main = new ZtunnelMetrics();
    const expected = { opened: 0, closed: 0, failed: 0, deny: 0, sent: 0, received: 0, mtlsDestReceived: 0 };
    const post = (d: MetricsDelta | undefined): void => {
      // What crosses the thread boundary: a structured clone.
      if (d !== undefined) expect(main.apply(structuredClone(d))).toBe(0);
    };
    const open: { w: number; meter: ReturnType<MetricsAccumulator["open"]>; ls: number }[] = [];
    for (let step = 0; step < 3000; step++) {
      const r = rnd();
      if (r < 0.3 || open.length === 0) {
        const w = Math.floor(rnd() * workers.length);
        const ls = Math.floor(rnd() * labelSets.length);
        open.push({ w, ls, meter: (workers[w] as MetricsAccumulator).open(labelSets[ls] as TrafficLabels) });
        expected.opened++;
      } else if (r < 0.8) {
        const c = open[Math.floor(rnd() * open.length)];
        if (c === undefined) continue;
        const up = Math.floor(rnd() * 100_000);
        const down = Math.floor(rnd() * 1_000_000);
        c.meter.add(up, down);
        expected.received += up;
        expected.sent += down;
        if (c.ls === 1) expected.mtlsDestReceived += up;
      } else if (r < 0.95) {
        const i = Math.floor(rnd() * open.length);
        const c = open[i];
        if (c === undefined) continue;
        open.splice(i, 1);
        const failed = rnd() < 0.2;
        const deny = failed && rnd() < 0.5;
        c.meter.close(failed ? { failed: true, responseFlags: deny ? "DENY" : "UF" } : {});
        c.meter.close({ failed: true }); // idempotent
        expected.closed++;
        if (failed) expected.failed++;
        if (deny) expected.deny++;
      } else {
        post(workers[Math.floor(rnd() * workers.length)]?.flush());
      }
    }
    for (const c of open.splice(0)) {
      c.meter.close();
      expected.closed++;
    }
    for (const w of workers) post(w.flush());
    for (const w of workers) expect(w.size).toBe(0);

    const samples = parseExposition(await main.metrics());
    expect(valueOf(samples, "istio_tcp_connections_opened_total")).toBe(expected.opened);
    expect(valueOf(samples, "istio_tcp_connections_closed_total")).toBe(expected.closed);
    expect(valueOf(samples, "istio_tcp_connections_failed_total")).toBe(expected.failed);
    expect(valueOf(samples, "istio_tcp_connections_failed_total", { response_flags: "DENY" })).toBe(expected.deny);
    expect(valueOf(samples, "istio_tcp_sent_bytes_total")).toBe(expected.sent);
    expect(valueOf(samples, "istio_tcp_received_bytes_total")).toBe(expected.received);
    expect(
      valueOf(samples, "istio_tcp_received_bytes_total", { reporter: "destination", connection_security_policy: "mutual_tls", destination_workload: "echo-a", source_workload: "sleep-1" }),
    ).toBe(expected.mtlsDestReceived);
    // Opens are counted with no flag; every sample carries the full Istio label set.
    expect(valueOf(samples, "istio_tcp_connections_opened_total", { response_flags: "-" })).toBe(expected.opened);
    for (const s of samples.filter((x) => x.name.startsWith("istio_tcp_"))) expect(Object.keys(s.labels).sort()).toEqual([...TRAFFIC_LABEL_NAMES].sort());
    expect(expected.opened).toBeGreaterThan(500);
    expect(expected.deny).toBeGreaterThan(0);
  });

  it("a long-lived connection's bytes are reported while it is open, then its series is released", () => {
    const acc = new MetricsAccumulator();
    const main = new ZtunnelMetrics();
    const m = acc.open(trafficLabels({ reporter: "source", destination: echoA }));
    m.add(10, 20);
    main.apply(acc.flush() ?? { series: [] });
    expect(acc.flush()).toBeUndefined();
    expect(acc.size).toBe(1);
    m.add(5, 0);
    m.close();
    m.add(1, 1); // late bytes after close are still counted
    const d = acc.flush();
    expect(d?.series).toHaveLength(1);
    expect(d?.series[0]).toMatchObject({ opened: 0, closed: 1, received: 6, sent: 1 });
    expect(acc.size).toBe(0);
  });

  it("drops malformed series instead of corrupting counters", async () => {
    const main = new ZtunnelMetrics();
    const good = { labels: Object.values(trafficLabels({ reporter: "source" })), opened: 1, closed: 0, failed: 0, sent: 0, received: 0 };
    expect(main.apply({ series: [good, { ...good, labels: ["x"] }, { ...good, sent: -5 }, { ...good, opened: Number.NaN }] })).toBe(3);
    expect(main.rejectedSeries).toBe(3);
    expect(valueOf(parseExposition(await main.metrics()), "istio_tcp_connections_opened_total")).toBe(1);
  });
});

describe("flush loop", () => {
  it("posts within a turn after a close, coalescing closes, and on the interval for open connections", async () => {
    const acc = new MetricsAccumulator();
    const posted: MetricsDelta[] = [];
    const loop = startFlushLoop(acc, (d) => posted.push(d), { intervalMs: 30 });
    try {
      const labels = trafficLabels({ reporter: "source" });
      const a = acc.open(labels);
      const b = acc.open(labels);
      a.close();
      b.close({ failed: true, responseFlags: "UF" });
      expect(posted).toHaveLength(0);
      await tick();
      expect(posted).toHaveLength(1);
      const closed = posted[0]?.series.reduce((n, s) => n + s.closed, 0);
      expect(closed).toBe(2);

      const long = acc.open(labels);
      long.add(100, 200);
      // A long-lived connection's bytes are posted by the periodic flush, not at close.
      await waitUntil(() => posted.length >= 2, "the periodic flush");
      expect(posted.slice(1).flatMap((d) => d.series).reduce((n, s) => n + s.received, 0)).toBe(100);
      long.add(1, 0);
    } finally {
      loop.stop();
    }
    expect(posted.flatMap((d) => d.series).reduce((n, s) => n + s.received, 0)).toBe(101);
  });
});

describe("registry", () => {
  it("exposes workload manager metrics and, when asked, process metrics", async () => {
    const m = new ZtunnelMetrics({ defaultMetrics: true });
    m.setProxyCounts(3, 1);
    m.proxyStarted();
    m.proxyStarted();
    m.proxyStopped();
    const samples = parseExposition(await m.metrics());
    expect(valueOf(samples, "workload_manager_active_proxy_count")).toBe(3);
    expect(valueOf(samples, "workload_manager_pending_proxy_count")).toBe(1);
    expect(valueOf(samples, "workload_manager_proxies_started_total")).toBe(2);
    expect(valueOf(samples, "workload_manager_proxies_stopped_total")).toBe(1);
    expect(samples.some((s) => s.name === "process_cpu_user_seconds_total")).toBe(true);
    expect(m.contentType).toContain("text/plain");
    const text = await m.metrics();
    expect(text).toContain("# TYPE istio_tcp_connections_opened_total counter");
  });

  it("two instances do not share counters", async () => {
    const a = new ZtunnelMetrics();
    const b = new ZtunnelMetrics();
    a.proxyStarted();
    expect(valueOf(parseExposition(await b.metrics()), "workload_manager_proxies_started_total")).toBe(0);
  });
});
