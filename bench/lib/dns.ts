import { createSocket as createDgram, type Socket as DgramSocket } from "node:dgram";
import * as dnsPacket from "dns-packet";
import { PodRedirector } from "../../src/agent/redirect/index.js";
import { createSocket, type NetnsHandle } from "../../src/native/index.js";
import { FakeUpstream } from "../../test/fixtures/dns-upstream.js";
import { Mesh } from "../../test/fixtures/ztunnel-e2e-cluster.js";
import type { PodInfo } from "../../test/harness/topology.js";
import { setFigure, type Figures } from "./figures.js";
import { round, spread } from "./stats.js";
import type { Teardown } from "./teardown.js";

// The DNS row (issue 18): queries per second from a pod through ztunnel's DNS proxy (captured
// by the pod's rules, forwarded to the upstream) vs straight to the same upstream (capture off
// for the pod), and the latency of a mesh-name answer (served by ztunnel from its state).
// The load comes from this process over UDP, CONCURRENCY queries in flight; the upstream is
// test/fixtures/dns-upstream.ts in an uncaptured pod's netns. The per-pod rate limit is off
// (DNS_POD_QUERY_RATE=0) so the proxy itself is measured.

const CONCURRENCY = 32;
const LOST_AFTER_MS = 1_000;
const MESH_NAME = "web.default.svc.cluster.local";
const OUTSIDE_NAME = "www.outside.test";

export interface DnsRowOptions {
  readonly durationS: number;
  readonly meshQueries: number;
}

export interface DnsRowDetails {
  proxyQps: number;
  directQps: number;
  lost: { proxy: number; direct: number };
  meshLatencyUs: ReturnType<typeof spread>;
}

/** One UDP socket in the pod's netns (no mark: the pod's rules apply to it). */
async function podUdp(netns: NetnsHandle): Promise<DgramSocket> {
  const fd = createSocket(netns, { family: 4, type: "udp" });
  const s = createDgram({ type: "udp4" });
  await new Promise<void>((r) => s.bind({ fd }, () => r()));
  return s;
}

/** Closed-loop load: CONCURRENCY queries in flight for `durationS`; returns answers per second. */
async function load(sock: DgramSocket, server: string, name: string, durationS: number): Promise<{ qps: number; lost: number }> {
  const inFlight = new Map<number, number>();
  let nextId = 0;
  let answered = 0;
  let lost = 0;
  const end = Date.now() + durationS * 1000;
  const send = (): void => {
    if (Date.now() >= end) return;
    const id = nextId++ & 0xffff;
    inFlight.set(id, Date.now());
    sock.send(dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name }] }), 53, server);
  };
  sock.on("message", (msg) => {
    if (msg.length < 2) return;
    const id = msg.readUInt16BE(0);
    if (!inFlight.delete(id)) return;
    answered++;
    send();
  });
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [id, t] of inFlight) {
      if (now - t < LOST_AFTER_MS) continue;
      inFlight.delete(id);
      lost++;
      send();
    }
  }, 100);
  const started = Date.now();
  for (let i = 0; i < CONCURRENCY; i++) send();
  await new Promise((r) => setTimeout(r, durationS * 1000));
  clearInterval(sweep);
  sock.removeAllListeners("message");
  return { qps: answered / ((Date.now() - started) / 1000), lost };
}

/** Sequential mesh-name queries through capture; latency of each in µs. */
async function meshLatency(sock: DgramSocket, server: string, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const id = i & 0xffff;
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${MESH_NAME} within ${LOST_AFTER_MS} ms`)), LOST_AFTER_MS);
      const on = (msg: Buffer): void => {
        if (msg.length < 2 || msg.readUInt16BE(0) !== id) return;
        clearTimeout(timer);
        sock.off("message", on);
        resolve();
      };
      sock.on("message", on);
      sock.send(dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: MESH_NAME }] }), 53, server);
    });
    out.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return out;
}

export async function dnsRow(opts: DnsRowOptions, figures: Figures, teardown: Teardown, log: (s: string) => void): Promise<DnsRowDetails> {
  const mesh = await Mesh.create({ nodes: 2, podsPerNode: 1, uncaptured: 1, env: { DNS_POD_QUERY_RATE: "0" } });
  teardown.add("dns mesh", () => mesh.destroy());
  const client = mesh.captured[0] as PodInfo;
  const plain = mesh.uncaptured[0] as PodInfo;
  const upstream = await FakeUpstream.start(plain.netnsPath, "0.0.0.0");
  teardown.add("dns upstream", () => upstream.stop());
  await mesh.setExtraState({ services: [{ name: "web", namespace: "default", hostname: MESH_NAME, vips: ["10.96.0.10"], ports: { "80": 8080 } }] });
  await mesh.startZtunnel(0, { DNS_UPSTREAMS: plain.ip });
  const sock = await podUdp(mesh.netns(client.netnsPath));
  teardown.add("dns client socket", async () => {
    sock.close();
  });

  log(`dns: ${opts.durationS} s through the proxy`);
  const proxy = await load(sock, plain.ip, OUTSIDE_NAME, opts.durationS);
  log(`dns: ${opts.meshQueries} mesh-name queries`);
  const lat = spread(await meshLatency(sock, plain.ip, opts.meshQueries));
  // Capture off for the client pod (what the annotation does): straight to the upstream.
  await new PodRedirector({ iptables: "nft", dnsCapture: false }).apply(client.netnsPath);
  log(`dns: ${opts.durationS} s straight to the upstream`);
  const direct = await load(sock, plain.ip, OUTSIDE_NAME, opts.durationS);
  if (upstream.count("udp") === 0) throw new Error("the upstream saw no query");

  setFigure(figures, "dns.proxyQps", round(proxy.qps, 0), "q/s");
  setFigure(figures, "dns.directQps", round(direct.qps, 0), "q/s");
  setFigure(figures, "dns.proxyRatio", round(proxy.qps / direct.qps, 2), "x");
  setFigure(figures, "dns.meshP99Us", round(lat.p99, 0), "µs");
  setFigure(figures, "dns.meshP50Us", round(lat.p50, 0), "µs");
  await teardown.runOne("dns client socket");
  await teardown.runOne("dns upstream");
  await teardown.runOne("dns mesh");
  return { proxyQps: proxy.qps, directQps: direct.qps, lost: { proxy: proxy.lost, direct: direct.lost }, meshLatencyUs: lat };
}
