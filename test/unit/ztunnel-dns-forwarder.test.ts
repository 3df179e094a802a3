import { createSocket as createDgram, type Socket as DgramSocket } from "node:dgram";
import { createServer, type Server, type Socket } from "node:net";
import * as dnsPacket from "dns-packet";
import { afterEach, describe, expect, it } from "vitest";
import { Forwarder } from "../../src/ztunnel/dns/forwarder.js";
import { DnsUpstreamError } from "../../src/ztunnel/dns/errors.js";
import { TokenBucket } from "../../src/ztunnel/dns/limits.js";
import { DnsMetrics, DnsMetricsAccumulator } from "../../src/ztunnel/dns/metrics.js";
import { SocketUpstreamTransport, type Upstream } from "../../src/ztunnel/dns/transport.js";
import { nameservers, parseUpstreamList } from "../../src/ztunnel/dns/upstreams.js";
import { PlainSocketFactory } from "../../src/sockets/index.js";
import { Registry } from "prom-client";

// The forwarder over real loopback sockets (the transport made by the native addon in this
// thread's netns, no mark): upstream servers of ours on UDP and TCP port 0.

interface Upstreamish {
  readonly addr: Upstream;
  readonly udpSeen: number[];
  readonly tcpSeen: number[];
  close(): Promise<void>;
}

const open: Upstreamish[] = [];

afterEach(async () => {
  for (const u of open.splice(0)) await u.close();
});

/** UDP+TCP on one port; `udp` decides the UDP reply (undefined: silent). */
async function upstream(udp: (q: dnsPacket.DecodedPacket) => Buffer | undefined, tcp?: (q: dnsPacket.DecodedPacket) => Buffer): Promise<Upstreamish> {
  const sock: DgramSocket = createDgram("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  const port = sock.address().port;
  const udpSeen: number[] = [];
  const tcpSeen: number[] = [];
  sock.on("message", (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    udpSeen.push(q.id ?? -1);
    const res = udp(q);
    if (res !== undefined) sock.send(res, rinfo.port, rinfo.address);
  });
  const conns = new Set<Socket>();
  const server: Server = createServer((s) => {
    conns.add(s);
    s.on("data", (d: Buffer) => {
      const q = dnsPacket.decode(d.subarray(2));
      tcpSeen.push(q.id ?? -1);
      const res = tcp?.(q);
      if (res === undefined) return;
      const len = Buffer.alloc(2);
      len.writeUInt16BE(res.length);
      s.write(Buffer.concat([len, res]));
    });
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  const u: Upstreamish = {
    addr: { address: "127.0.0.1", port },
    udpSeen,
    tcpSeen,
    close: async () => {
      sock.close();
      for (const c of conns) c.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  open.push(u);
  return u;
}

function answer(q: dnsPacket.DecodedPacket, ip: string, flags = 0): Buffer {
  return dnsPacket.encode({ type: "response", id: q.id ?? 0, flags, questions: q.questions ?? [], answers: [{ type: "A", name: q.questions?.[0]?.name ?? "", ttl: 5, data: ip }] });
}

const query = (id: number): Buffer =>
  dnsPacket.encode({
    type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: "x.example.test" }],
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  });

function forwarder(upstreams: Upstream[], deadlineMs = 2_000, attemptTimeoutMs = 300): Forwarder {
  const transport = new SocketUpstreamTransport({ netns: null, mark: undefined, tcp: new PlainSocketFactory() });
  return new Forwarder(transport, { upstreams, deadlineMs, attemptTimeoutMs });
}

describe("DNS forwarder", () => {
  it("forwards the client's packet under a fresh id and hands the answer back with the client's id", async () => {
    let sawEdns = false;
    const u = await upstream((q) => {
      sawEdns = (q.additionals ?? []).some((a) => a.type === "OPT");
      return answer(q, "192.0.2.1");
    });
    const res = dnsPacket.decode(await forwarder([u.addr]).forward(query(4242), 4242));
    expect(res.id).toBe(4242);
    expect(res.answers?.[0]).toMatchObject({ type: "A", data: "192.0.2.1" });
    expect(sawEdns).toBe(true);
    expect(u.udpSeen).toHaveLength(1);
  });

  it("retries the next upstream when one does not answer", async () => {
    const silent = await upstream(() => undefined);
    const good = await upstream((q) => answer(q, "192.0.2.2"));
    const res = dnsPacket.decode(await forwarder([silent.addr, good.addr]).forward(query(7), 7));
    expect(res.answers?.[0]).toMatchObject({ data: "192.0.2.2" });
    expect(silent.udpSeen).toHaveLength(1);
  });

  it("ignores replies with another id (spoofed or late) and waits for the real one", async () => {
    const u = await upstream((q) => answer({ ...q, id: ((q.id ?? 0) + 1) & 0xffff }, "203.0.113.66"));
    await expect(forwarder([u.addr], 800, 300).forward(query(9), 9)).rejects.toBeInstanceOf(DnsUpstreamError);
  });

  it("retries over TCP when the UDP answer is truncated", async () => {
    const u = await upstream(
      (q) => dnsPacket.encode({ type: "response", id: q.id ?? 0, flags: dnsPacket.TRUNCATED_RESPONSE, questions: q.questions ?? [] }),
      (q) => answer(q, "192.0.2.3"),
    );
    const res = dnsPacket.decode(await forwarder([u.addr]).forward(query(11), 11));
    expect(res).toMatchObject({ id: 11, flag_tc: false });
    expect(res.answers?.[0]).toMatchObject({ data: "192.0.2.3" });
    expect(u.tcpSeen).toHaveLength(1);
  });

  it("gives up at the deadline with an error naming the upstreams", async () => {
    const a = await upstream(() => undefined);
    const err = await forwarder([a.addr], 500, 200).forward(query(1), 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DnsUpstreamError);
    expect((err as Error).message).toContain(`127.0.0.1:${a.addr.port}`);
    expect(a.udpSeen.length).toBeGreaterThanOrEqual(2);
  });
});

describe("DNS upstream configuration", () => {
  it("reads nameservers from resolv.conf text and upstream lists from the environment", () => {
    expect(nameservers("# c\nsearch a.b\nnameserver 10.0.0.10\nnameserver fe80::1%eth0\nnameserver fd00::53\noptions ndots:5\n")).toEqual([
      { address: "10.0.0.10", port: 53 },
      { address: "fd00::53", port: 53 },
    ]);
    expect(parseUpstreamList("10.0.0.1:5353,[fd00::1]")).toEqual([
      { address: "10.0.0.1", port: 5353 },
      { address: "fd00::1", port: 53 },
    ]);
    expect(() => parseUpstreamList("10.0.0.1:0")).toThrow(/port out of range/);
  });
});

describe("DNS limits and metrics", () => {
  it("the token bucket allows a burst, then the rate", () => {
    let now = 0;
    const b = new TokenBucket(10, 3, () => now);
    expect([b.tryTake(), b.tryTake(), b.tryTake(), b.tryTake()]).toEqual([true, true, true, false]);
    now = 100; // 0.1 s at 10/s: one more token
    expect([b.tryTake(), b.tryTake()]).toEqual([true, false]);
  });

  it("worker deltas add up in the main registry under ztunnel's names and labels", async () => {
    const acc = new DnsMetricsAccumulator();
    const l = { queryType: "a", protocol: "udp" as const, canonicalService: "web", canonicalRevision: "v1" };
    acc.request(l);
    acc.request(l);
    acc.upstreamRequest(l);
    acc.upstreamDone(l, 0.004, true);
    const registry = new Registry();
    const m = new DnsMetrics(registry);
    m.apply(acc.flush()!);
    expect(acc.flush()).toBeUndefined();
    m.apply({ series: [{ labels: ["a"], requests: 1, upstreamRequests: 0, upstreamFailures: 0, durations: [] }] });
    expect(m.rejectedSeries).toBe(1);
    const text = await registry.metrics();
    const labels = 'request_query_type="a",request_protocol="udp",source_canonical_service="web",source_canonical_revision="v1"';
    expect(text).toContain(`istio_dns_requests_total{${labels}} 2`);
    expect(text).toContain(`istio_dns_upstream_requests_total{${labels}} 1`);
    expect(text).toContain(`istio_dns_upstream_failures_total{${labels}} 1`);
    expect(text).toContain(`istio_dns_upstream_request_duration_seconds_bucket{le="0.005",${labels}} 1`);
  });
});
