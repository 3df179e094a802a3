import { execFile } from "node:child_process";
import { createSocket as createDgram } from "node:dgram";
import { promisify } from "node:util";
import { mkdir, rm, writeFile } from "node:fs/promises";
import type { Socket } from "node:net";
import * as dnsPacket from "dns-packet";
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PodRedirector } from "../../src/agent/redirect/index.js";
import { createSocket } from "../../src/native/index.js";
import { BIG_RECORDS, FakeUpstream, OUTSIDE_IP } from "../fixtures/dns-upstream.js";
import { Mesh, waitFor } from "../fixtures/ztunnel-e2e-cluster.js";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";

// The DNS proxy end to end (DESIGN §15, issue 18): 2 node netns, one ztunnel per node, the
// agent's real in-pod rules (DNS capture on, its default), `dig` run inside an enrolled pod. The
// upstream resolver is a small server of ours in an uncaptured pod's netns; every query sent to
// it with `@upstream` is captured by the pod's rules and answered by ztunnel on 15053 unless
// capture is off for the pod.

const execFileP = promisify(execFile);
const UPSTREAM_DEADLINE_MS = 2_000;
const WEB = "web.default.svc.cluster.local";

describePrivileged("ztunnel DNS proxy: mesh names from the state, the rest upstream", () => {
  let mesh: Mesh | undefined;
  let upstream: FakeUpstream | undefined;
  let a0: PodInfo; // node 0, the client
  let a1: PodInfo; // node 0, backs the headless service as db-0
  let plain: PodInfo; // node 1, uncaptured: the upstream resolver lives here
  const etcDirs: string[] = [];

  const m = (): Mesh => mesh!;
  const up = (): FakeUpstream => upstream!;

  /** dig inside a pod; returns stdout (dig exits 0 for any DNS answer, SERVFAIL included). */
  async function dig(pod: PodInfo, args: string[], timeoutSec = 4): Promise<string> {
    const all = ["netns", "exec", pod.ns, "dig", `@${plain.ip}`, "+tries=1", `+timeout=${timeoutSec}`, ...args];
    try {
      return (await execFileP("ip", all)).stdout;
    } catch (err) {
      // dig prints why it failed (timed out, refused) on stdout.
      const e = err as { stdout?: string; stderr?: string };
      throw new Error(`dig ${args.join(" ")} in ${pod.name}: ${(e.stdout ?? "").trim()} ${(e.stderr ?? "").trim()}`);
    }
  }

  async function short(pod: PodInfo, args: string[]): Promise<string[]> {
    return (await dig(pod, ["+short", ...args])).split("\n").filter((l) => l.trim() !== "");
  }

  function status(out: string): string | undefined {
    return /status: ([A-Z]+)/.exec(out)?.[1];
  }

  beforeAll(async () => {
    mesh = await Mesh.create({ uncaptured: 1 });
    [a0, a1] = mesh.captured as [PodInfo, PodInfo];
    plain = mesh.uncaptured[0]!;
    upstream = await FakeUpstream.start(plain.netnsPath, "0.0.0.0");
    await mesh.setExtraState({
      services: [
        { name: "web", namespace: "default", hostname: WEB, vips: ["10.96.0.10", "fd00:96::10"], ports: { "80": 8080 } },
        { name: "web", namespace: "other", hostname: "web.other.svc.cluster.local", vips: ["10.96.0.20"], ports: { "80": 8080 } },
        { name: "db", namespace: "default", hostname: "db.default.svc.cluster.local", vips: [], ports: { "5432": 0 }, portNames: { "5432": "postgres" } },
      ],
      members: { [a1.name]: { "default/db.default.svc.cluster.local": { "5432": 0 } } },
      hostnames: { [a1.name]: "db-0" },
    });
    // `ip netns exec` shows /etc/netns/<ns>/resolv.conf as the pod's /etc/resolv.conf: the
    // search list kubelet writes for a pod in "default".
    const dir = `/etc/netns/${a0.ns}`;
    await mkdir(dir, { recursive: true });
    etcDirs.push(dir);
    await writeFile(`${dir}/resolv.conf`, `nameserver ${plain.ip}\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n`);
    const env = { DNS_UPSTREAMS: plain.ip, DNS_UPSTREAM_TIMEOUT: `${UPSTREAM_DEADLINE_MS}ms` };
    await mesh.startZtunnel(0, env);
    await mesh.startZtunnel(1, env);
  }, 60_000);

  afterAll(async () => {
    await upstream?.stop().catch(() => undefined);
    await mesh?.destroy();
    for (const d of etcDirs) await rm(d, { recursive: true, force: true });
  });

  it("every worker serves UDP and TCP 15053 in the pod, marked; config_dump lists them", async () => {
    const dump = (await m().configDump(0)) as unknown as { workloadState: Record<string, { listeners: { role: string; port: number; protocol: string; worker: number; mark: number }[] }> };
    const ls = dump.workloadState[m().uid(a0)]?.listeners ?? [];
    const dns = ls.filter((l) => l.port === 15053).map((l) => `${l.worker} ${l.role} ${l.protocol} ${l.mark}`).sort();
    expect(dns).toEqual([
      "0 dns-tcp TCP 1337", "0 dns-tcp TCP 1337", "0 dns-udp UDP 1337", "0 dns-udp UDP 1337",
      "1 dns-tcp TCP 1337", "1 dns-tcp TCP 1337", "1 dns-udp UDP 1337", "1 dns-udp UDP 1337",
    ]);
    // ss: the TCP listeners on 127.0.0.1 and ::1 of both workers.
    expect(await m().listenersOn(a0, 15053)).toHaveLength(4);
  });

  it("a mesh service: A and AAAA from its VIPs, over UDP and TCP, never asked upstream", async () => {
    expect(await short(a0, [WEB, "A"])).toEqual(["10.96.0.10"]);
    expect(await short(a0, [WEB, "AAAA"])).toEqual(["fd00:96::10"]);
    expect(await short(a0, ["+tcp", WEB, "A"])).toEqual(["10.96.0.10"]);
    expect(await short(a0, ["+tcp", WEB, "AAAA"])).toEqual(["fd00:96::10"]);
    const full = await dig(a0, [WEB, "A"]);
    expect(full).toMatch(/flags: qr aa rd ra/);
    expect(full).toMatch(new RegExp(`${WEB}\\.\\s+30\\s+IN\\s+A\\s+10\\.96\\.0\\.10`));
    expect(up().seen.filter((q) => q.name === WEB)).toEqual([]);
  });

  it("short names through the pod's search path (dig +search and the libc resolver)", async () => {
    expect(await short(a0, ["+search", "web", "A"])).toEqual(["10.96.0.10"]);
    // "web.other" + first search domain: ztunnel answers with a CNAME to the real service.
    const other = await short(a0, ["+search", "web.other", "A"]);
    expect(other).toEqual(["web.other.svc.cluster.local.", "10.96.0.20"]);
    const { stdout } = await m().topo.exec(a0.ns, "getent", ["ahostsv4", "web.other"]);
    expect(stdout).toContain("10.96.0.20");
  });

  it("a headless service's pod hostname and its SRV record for the named port", async () => {
    expect(await short(a0, ["db-0.db.default.svc.cluster.local", "A"])).toEqual([a1.ip]);
    expect(await short(a0, ["db.default.svc.cluster.local", "A"])).toEqual([a1.ip]);
    // ndots:5 tries the first search domain first: that is already the pod's FQDN.
    expect(await short(a0, ["+search", "db-0.db", "A"])).toEqual([a1.ip]);
    expect(await short(a0, ["_postgres._tcp.db.default.svc.cluster.local", "SRV"])).toEqual(["0 100 5432 db-0.db.default.svc.cluster.local."]);
    const full = await dig(a0, ["_postgres._tcp.db.default.svc.cluster.local", "SRV"]);
    expect(full).toMatch(new RegExp(`ADDITIONAL SECTION:\\ndb-0\\.db\\.default\\.svc\\.cluster\\.local\\.\\s+30\\s+IN\\s+A\\s+${a1.ip.replace(/\./g, "\\.")}`));
    expect(status(await dig(a0, ["_nope._tcp.db.default.svc.cluster.local", "SRV"]))).toBe("NXDOMAIN");
  });

  it("an outside name is forwarded upstream over UDP and TCP, with EDNS as the client sent it", async () => {
    const before = up().seen.length;
    expect(await short(a0, ["www.outside.test", "A"])).toEqual([OUTSIDE_IP]);
    expect(await short(a0, ["+tcp", "www.outside.test", "A"])).toEqual([OUTSIDE_IP]);
    expect(await short(a0, ["+noedns", "www.outside.test", "TXT"])).toEqual(['"from-upstream"']);
    const seen = up().seen.slice(before);
    // ztunnel forwards over UDP whatever the client used; dig sends EDNS unless told not to.
    expect(seen.map((q) => `${q.transport} ${q.type} ${q.edns}`)).toEqual(["udp A true", "udp A true", "udp TXT false"]);
    // A mesh name's type we do not serve (TXT) goes upstream too.
    expect(status(await dig(a0, [WEB, "TXT"]))).toBe("NXDOMAIN");
    expect(up().count("udp", WEB)).toBe(1);
  });

  it("a truncated upstream answer is retried over TCP and reaches the UDP client whole", async () => {
    const tcpBefore = up().count("tcp", "big.outside.test");
    const ips = await short(a0, ["big.outside.test", "A"]);
    expect(ips).toHaveLength(BIG_RECORDS);
    expect(up().count("tcp", "big.outside.test")).toBe(tcpBefore + 1);
    // Without EDNS the client takes 512 bytes: ztunnel hands it a truncated answer, dig retries over TCP.
    const noedns = await dig(a0, ["+noedns", "+ignore", "big.outside.test", "A"]);
    expect(noedns).toMatch(/flags: qr tc/);
  });

  it("istio_dns_* metrics with ztunnel's labels", async () => {
    const expected = [
      /istio_dns_requests_total\{request_query_type="a",request_protocol="udp",source_canonical_service="[^"]+",source_canonical_revision="latest"\} \d+/,
      /istio_dns_requests_total\{request_query_type="aaaa",request_protocol="tcp"/,
      /istio_dns_upstream_requests_total\{request_query_type="a",request_protocol="udp"/,
      /istio_dns_upstream_request_duration_seconds_count\{request_query_type="a"/,
    ];
    // Each worker flushes its counters about once a second, and the earlier queries were
    // answered by whichever worker SO_REUSEPORT chose: wait for every series, not the first.
    let body = "";
    await waitFor(
      async () => {
        body = (await m().http(0, 15020, "/metrics")).body;
        return expected.every((re) => re.test(body));
      },
      5_000,
      () => `DNS series missing: ${expected.filter((re) => !re.test(body)).map(String).join(", ")}`,
    );
    for (const re of expected) expect(body).toMatch(re);
  });

  it("capture off for the pod (annotation or AMBIENT_DNS_CAPTURE=false): queries go straight upstream", async () => {
    const node = m().redirector;
    try {
      // What the agent applies for a pod annotated ambient.istio.io/dns-capture: "false".
      await node.apply(a0.netnsPath, { dnsCapture: false });
      const before = up().count("udp", WEB);
      expect(status(await dig(a0, [WEB, "A"]))).toBe("NXDOMAIN");
      expect(up().count("udp", WEB)).toBe(before + 1);
      // Annotation removed: reconciled back to capture.
      await node.apply(a0.netnsPath);
      expect(await short(a0, [WEB, "A"])).toEqual(["10.96.0.10"]);
      // A node with AMBIENT_DNS_CAPTURE=false.
      await new PodRedirector({ iptables: "nft", dnsCapture: false }).apply(a0.netnsPath);
      expect(status(await dig(a0, ["+tcp", WEB, "A"]))).toBe("NXDOMAIN");
      expect(up().count("tcp", WEB)).toBe(1);
    } finally {
      await node.apply(a0.netnsPath);
    }
    expect(await short(a0, [WEB, "A"])).toEqual(["10.96.0.10"]);
  });

  it("upstream not answering: SERVFAIL within the deadline, mesh names still served", async () => {
    up().silent = true;
    try {
      const t0 = Date.now();
      const out = await dig(a0, ["down.outside.test", "A"]);
      const took = Date.now() - t0;
      expect(status(out)).toBe("SERVFAIL");
      expect(took).toBeGreaterThanOrEqual(UPSTREAM_DEADLINE_MS - 100);
      expect(took).toBeLessThan(UPSTREAM_DEADLINE_MS + 1_500);
      expect(await short(a0, [WEB, "A"])).toEqual(["10.96.0.10"]);
    } finally {
      up().silent = false;
    }
  });

  it("10k random packets over UDP and TCP: ztunnel stays up and keeps answering", async () => {
    const valid = dnsPacket.encode({ type: "query", id: 0x1234, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: "www.outside.test" }] });
    const packet = fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: 600 }),
      // A plausible header (query, one question) over random bytes: reaches the decoder.
      fc.uint8Array({ minLength: 0, maxLength: 300 }).map((tail) => Buffer.concat([Buffer.from([0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]), tail])),
      // A valid query with a few bytes overwritten.
      fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }).map((edits) => {
        const b = Buffer.from(valid);
        for (const [i, v] of edits) b[i] = v;
        return b;
      }),
    );
    const packets = fc.sample(packet, { numRuns: 10_000, seed: 18 }).map((p) => Buffer.from(p));

    const netns = m().netns(a0.netnsPath);
    const udp = createDgram({ type: "udp4" });
    const fd = createSocket(netns, { family: 4, type: "udp" });
    await new Promise<void>((r) => udp.bind({ fd }, () => r()));
    let replies = 0;
    udp.on("message", () => replies++);
    for (let i = 0; i < packets.length; i++) {
      udp.send(packets[i]!, 15053, "127.0.0.1");
      if (i % 200 === 199) await new Promise((r) => setTimeout(r, 5));
    }
    // TCP: a few connections, each fed length-prefixed random messages (some lengths lie).
    const conns: Socket[] = [];
    for (let c = 0; c < 10; c++) {
      const s = await m().dial(a0, "127.0.0.1", 15053);
      s.on("error", () => undefined);
      s.on("data", () => undefined);
      conns.push(s);
      for (const p of packets.slice(c * 1000, c * 1000 + 1000)) {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(p.length);
        s.write(Buffer.concat([len, p]));
      }
      s.write(Buffer.from([0xff, 0xff, 1, 2, 3])); // a frame that never completes
    }
    await waitFor(() => replies > 0, 5_000, () => "no reply to any random UDP packet");
    for (const s of conns) s.destroy();
    udp.close();
    expect(m().node(0).ztunnel?.exitCode).toBeNull();
    // The pod's rate limit may have dropped some of the flood; answers come back within a moment.
    await waitFor(async () => (await short(a0, [WEB, "A"]).catch(() => [])).join() === "10.96.0.10", 10_000, () => "ztunnel stopped answering");
    expect(await short(a0, ["+tcp", "www.outside.test", "A"])).toEqual([OUTSIDE_IP]);
    expect(m().logs(0, 400)).not.toMatch(/DNS handler failed/);
  }, 60_000);

  it("ztunnel restarted: DNS is back with the pod's listeners", async () => {
    const old = m().node(0).ztunnel!;
    await new Promise<void>((resolve) => {
      old.once("exit", () => resolve());
      old.kill("SIGKILL");
    });
    // Captured, and nobody on 15053: the query fails (refused or timed out).
    await expect(dig(a0, [WEB], 1)).rejects.toThrow(/timed out|refused|no servers/);
    await m().startZtunnel(0, m().node(0).env);
    await waitFor(async () => (await m().listenersOn(a0, 15053)).length === 4, 10_000, () => "DNS listeners not back");
    expect(await short(a0, [WEB, "A"])).toEqual(["10.96.0.10"]);
    expect(await short(a0, ["+tcp", "www.outside.test", "A"])).toEqual([OUTSIDE_IP]);
  }, 30_000);
});
