import { describe, expect, it } from "vitest";
import { parseStatTicks } from "../../bench/lib/cpu.js";
import { shortReason } from "../../bench/lib/errors.js";
import { parseIperfJson, iperfClientArgs } from "../../bench/lib/iperf.js";
import { parseOptions } from "../../bench/lib/options.js";
import { parseConnRate, parseLatency } from "../../bench/lib/pingpong.js";
import { percentile, spread } from "../../bench/lib/stats.js";
import { parseZdsAddAck } from "../../bench/lib/zds.js";
import { renderStunnelConfig } from "../../bench/stunnel/config.js";

// Shape of a real `iperf3 -c … -P 2 -J` report (iperf 3.12), trimmed to the fields we read.
const IPERF_OK = JSON.stringify({
  start: { connected: [], version: "iperf 3.12", test_start: { protocol: "TCP", num_streams: 2, blksize: 131072, omit: 1, duration: 1 } },
  intervals: [
    { streams: [], sum: { start: 0, end: 1.000288, seconds: 1.000288, bytes: 2915041280, omitted: true } },
    { streams: [], sum: { start: 0, end: 1.00008, seconds: 1.00008, bytes: 1701314560, omitted: false } },
  ],
  end: {
    sum_sent: { start: 0, end: 1.000081, seconds: 1.000081, bytes: 1701314560, bits_per_second: 13609414117.456486, retransmits: 3, sender: true },
    sum_received: { start: 0, end: 1.000232, seconds: 1.000232, bytes: 1687158784, bits_per_second: 13494139631.605467, sender: true },
    cpu_utilization_percent: { host_total: 27.75, remote_total: 70.21 },
  },
});
const IPERF_REFUSED = `{
	"start":	{ "connected":	[], "version":	"iperf 3.12" },
	"intervals":	[],
	"end":	{ },
	"error":	"unable to connect to server: Connection refused"
}`;

describe("iperf3 -J report", () => {
  it("reads the receiver's throughput, streams, retransmits and CPU", () => {
    expect(parseIperfJson(IPERF_OK)).toEqual({
      streams: 2,
      seconds: 1.000232,
      receivedBps: 13494139631.605467,
      sentBps: 13609414117.456486,
      retransmits: 3,
      // The average leaves out the omitted first second; the byte total for CPU per GiB does not.
      totalBytes: 1687158784 + 2915041280,
      cpuLocal: 27.75,
      cpuRemote: 70.21,
    });
  });

  it("total bytes without intervals is the receiver's sum", () => {
    const doc = JSON.parse(IPERF_OK) as { intervals?: unknown };
    delete doc.intervals;
    expect(parseIperfJson(JSON.stringify(doc)).totalBytes).toBe(1687158784);
  });

  it("turns iperf3's error field into the error message", () => {
    expect(() => parseIperfJson(IPERF_REFUSED)).toThrow("iperf3: unable to connect to server: Connection refused");
  });

  it("names what is missing in a truncated report and rejects non-JSON", () => {
    expect(() => parseIperfJson(JSON.stringify({ start: { test_start: { num_streams: 1 } }, end: {} }))).toThrow(/end\.sum_received/);
    expect(() => parseIperfJson("iperf3: error - unable to connect")).toThrow(/no JSON report/);
  });

  it("client arguments: streams, duration, omit, JSON", () => {
    expect(iperfClientArgs("10.1.1.2", 5201, 4, 10)).toEqual(["-c", "10.1.1.2", "-p", "5201", "-P", "4", "-t", "10", "-O", "1", "-J", "--connect-timeout", "5000"]);
  });
});

describe("ping-pong tool reports", () => {
  it("latency: percentiles of the samples, last JSON line wins over noise", () => {
    const samples = Array.from({ length: 100 }, (_, i) => i + 1);
    const out = `warming up\n${JSON.stringify({ kind: "latency", size: 1024, samplesUs: samples })}\n`;
    const r = parseLatency(out);
    expect(r.size).toBe(1024);
    expect(r.rttUs).toMatchObject({ count: 100, p50: 50, p90: 90, p99: 99, max: 100, mean: 50.5 });
  });

  it("connrate: connections per second and the spread of one connection's time", () => {
    const r = parseConnRate(JSON.stringify({ kind: "connrate", connections: 5000, errors: 2, lastError: "ECONNRESET", seconds: 2, concurrency: 8, samplesUs: [100, 200, 300] }));
    expect(r).toMatchObject({ connections: 5000, errors: 2, perSecond: 2500, concurrency: 8 });
    expect(r.connUs.p50).toBe(200);
  });

  it("connrate with no completed connection is an error carrying the last failure", () => {
    expect(() => parseConnRate(JSON.stringify({ kind: "connrate", connections: 0, errors: 1001, lastError: "Error: connect ECONNREFUSED", seconds: 3, concurrency: 8, samplesUs: [] }))).toThrow(/ECONNREFUSED/);
  });

  it("rejects the wrong kind, no report and empty latency samples", () => {
    expect(() => parseLatency(JSON.stringify({ kind: "connrate" }))).toThrow(/expected kind latency/);
    expect(() => parseLatency("")).toThrow(/no report/);
    expect(() => parseLatency(JSON.stringify({ kind: "latency", size: 1024, samplesUs: [] }))).toThrow(/no latency samples/);
  });
});

describe("stats", () => {
  it("nearest-rank percentiles", () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2);
    expect(percentile([1, 2, 3, 4], 99)).toBe(4);
    expect(percentile([7], 0)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
    expect(spread([3, 1, 2])).toMatchObject({ count: 3, p50: 2, max: 3, mean: 2 });
  });
});

describe("bench/zds-add-ack output", () => {
  it("reads count, percentiles and rate", () => {
    const out = [
      "ZDS Add→Ack with netns fd, 1000 Adds through one SEQPACKET connection",
      "  p50 160 µs  p90 400 µs  p99 5409 µs  max 9000 µs",
      "  total 512.3 ms, 1952 Adds/s",
      "  open fds before 30, after 30",
    ].join("\n");
    expect(parseZdsAddAck(out)).toEqual({ count: 1000, p50Us: 160, p90Us: 400, p99Us: 5409, maxUs: 9000, addsPerSecond: 1952 });
    expect(() => parseZdsAddAck("something else")).toThrow(/not understood/);
  });
});

describe("command line", () => {
  it("defaults run every row for 10 s; --quick shortens", () => {
    const o = parseOptions([], "/r");
    expect([...o.rows]).toEqual(["idle-memory", "throughput", "latency", "connrate", "scale", "zds-ack", "cni-add", "dns"]);
    expect(o).toMatchObject({ durationS: 10, scalePods: 1000, quick: false, outDir: "/r" });
    expect(parseOptions(["--quick"], "/r")).toMatchObject({ durationS: 3, scalePods: 200, quick: true });
  });

  it("--only, --duration (both spellings), --out", () => {
    const o = parseOptions(["--only", "latency,scale", "--duration=5", "--out", "/tmp/x"], "/r");
    expect([...o.rows]).toEqual(["latency", "scale"]);
    expect(o.durationS).toBe(5);
    expect(o.outDir).toBe("/tmp/x");
  });

  it("rejects unknown rows and flags, bad durations and missing values, naming them", () => {
    expect(() => parseOptions(["--only", "latncy"], "/r")).toThrow(/unknown row "latncy"/);
    expect(() => parseOptions(["--fast"], "/r")).toThrow(/unknown argument "--fast"/);
    expect(() => parseOptions(["--duration", "0"], "/r")).toThrow(/--duration must be/);
    expect(() => parseOptions(["--duration", "ten"], "/r")).toThrow(/--duration must be/);
    expect(() => parseOptions(["--only"], "/r")).toThrow(/--only needs a value/);
    expect(() => parseOptions(["--help"], "/r")).toThrow(/^usage/);
  });
});

describe("stunnel configuration", () => {
  it("pins TLS 1.3 with one AES-GCM suite, mutual verification and TCP_NODELAY per service", () => {
    const conf = renderStunnelConfig({
      client: true,
      services: [
        { name: "iperf", accept: "10.1.0.1:15300", connect: "192.168.1.2:15301" },
        { name: "echo", accept: "10.1.0.1:15310", connect: "192.168.1.2:15311" },
      ],
      certFile: "/t/client.pem",
      keyFile: "/t/client.key",
      caFile: "/t/ca.pem",
    });
    expect(conf).toContain("foreground = yes");
    const sections = conf.split(/^\[/m).slice(1);
    expect(sections).toHaveLength(2);
    for (const s of sections) {
      for (const line of ["client = yes", "verifyChain = yes", "sslVersionMin = TLSv1.3", "sslVersionMax = TLSv1.3", "ciphersuites = TLS_AES_128_GCM_SHA256", "socket = l:TCP_NODELAY=1", "socket = r:TCP_NODELAY=1", "CAfile = /t/ca.pem"]) {
        expect(s).toContain(line);
      }
    }
    expect(sections[1]).toContain("accept = 10.1.0.1:15310\nconnect = 192.168.1.2:15311");
  });

  it("server side says client = no; no services or odd names are refused", () => {
    const side = { client: false, certFile: "c", keyFile: "k", caFile: "a" };
    expect(renderStunnelConfig({ ...side, services: [{ name: "x", accept: "a:1", connect: "b:2" }] })).toContain("client = no");
    expect(() => renderStunnelConfig({ ...side, services: [] })).toThrow(/at least one service/);
    expect(() => renderStunnelConfig({ ...side, services: [{ name: "a]b", accept: "a:1", connect: "b:2" }] })).toThrow(/service name/);
  });
});

describe("short failure reasons", () => {
  it("adds the child's error record to a bare first line", () => {
    const text = 'ztunnel on node 1 exited:\n{"level":"info","msg":"starting"}\n{"level":"error","scope":"ztunnel","err":"PACKET_MARK: must be an integer","msg":"ztunnel failed to start"}\n';
    expect(shortReason(text)).toBe("ztunnel on node 1 exited: PACKET_MARK: must be an integer");
  });

  it("keeps a plain message as it is", () => {
    expect(shortReason("stunnel server is not listening on port 15301 after 10000 ms")).toBe("stunnel server is not listening on port 15301 after 10000 ms");
    expect(shortReason("")).toBe("unknown error");
  });
});

describe("/proc/<pid>/stat CPU ticks", () => {
  it("reads utime (field 14) and stime (field 15) after a comm holding spaces and parentheses", () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3)); // field n holds n
    const line = `4242 (node (worker) x) S ${fields.slice(1).join(" ")}`;
    expect(parseStatTicks(line)).toEqual({ utime: 14, stime: 15 });
  });

  it("rejects what is not a stat line", () => {
    expect(() => parseStatTicks("garbage")).toThrow(/not a \/proc/);
    expect(() => parseStatTicks("1 (x) S 1 2")).toThrow(/no utime/);
  });
});
