import { afterAll, beforeAll, expect, it } from "vitest";
import { DEFAULT_REDIRECT_OPTIONS, PodRedirector } from "../../src/agent/redirect/index.js";
import { ORIGDST_SERVER, SYSTEM_PYTHON, TAG_SERVER, TCP_CLIENT, waitForLine } from "../harness/child-output.js";
import { describePrivileged } from "../harness/privileged.js";
import { Topology, type PodInfo } from "../harness/topology.js";

// Traffic through the real rules: pod A (node 0) has redirection applied, pod B (node 1) is a
// plain peer. Listeners answer "<tag> <local port> <peer address>", so each connection shows
// where it landed and with which source.

const MARK = String(DEFAULT_REDIRECT_OPTIONS.mark);

describePrivileged("in-pod redirection steers real traffic", () => {
  let topo: Topology;
  let a: PodInfo;
  let b: PodInfo;
  const redirector = new PodRedirector({ iptables: "nft" });

  async function connect(ns: string, host: string, port: number, extra: string[] = []): Promise<string> {
    const res = await topo.exec(ns, SYSTEM_PYTHON, [TCP_CLIENT, host, String(port), "--timeout", "3", ...extra]).catch((e: unknown) => ({
      stdout: String(e),
    }));
    return res.stdout.trim();
  }

  beforeAll(async () => {
    topo = await Topology.create({ nodes: 2, podsPerNode: 1, ipv6: true });
    a = topo.pod(0, 0);
    b = topo.pod(1, 0);
    // Stand-ins for ztunnel (15001 outbound, 15006 inbound plaintext, 15008 HBONE) and the app (8080).
    const inA = topo.spawnNode(a.ns, TAG_SERVER, ["A", "15001", "15006", "15008", "8080"]);
    const inB = topo.spawnNode(b.ns, TAG_SERVER, ["B", "8080"]);
    await Promise.all([waitForLine(inA, "ready"), waitForLine(inB, "ready")]);
    expect((await redirector.apply(a.netnsPath)).outcome).toBe("applied");
  });
  afterAll(async () => {
    await topo?.destroy();
  });

  it("outbound TCP from the pod to another pod lands on 15001 in the pod (IPv4 and IPv6)", async () => {
    expect(await connect(a.ns, b.ip, 8080)).toBe(`A 15001 ${a.ip}`);
    expect(await connect(a.ns, b.ip6!, 8080)).toBe(`A 15001 ${a.ip6}`);
  });

  it("inbound TCP from another pod lands on 15006 (IPv4 and IPv6)", async () => {
    expect(await connect(b.ns, a.ip, 8080)).toBe(`A 15006 ${b.ip}`);
    expect(await connect(b.ns, a.ip6!, 8080)).toBe(`A 15006 ${b.ip6}`);
  });

  it("the redirected connection keeps its original destination (SO_ORIGINAL_DST), IPv4 and IPv6", async () => {
    const pod = await topo.addPod(0, "origdst");
    try {
      const srv = topo.spawn(pod.ns, SYSTEM_PYTHON, [ORIGDST_SERVER, "15001"]);
      await waitForLine(srv, "ready");
      await redirector.apply(pod.netnsPath);
      expect(await connect(pod.ns, b.ip, 8080)).toBe(`${b.ip} 8080`);
      expect(await connect(pod.ns, b.ip6!, 9090)).toBe(`${b.ip6} 9090`);
    } finally {
      await topo.removePod(pod);
    }
  });

  it("inbound HBONE on 15008 is not redirected", async () => {
    expect(await connect(b.ns, a.ip, 15008)).toBe(`A 15008 ${b.ip}`);
  });

  it("traffic carrying mark 0x539 bypasses redirection and reaches the real destination", async () => {
    expect(await connect(a.ns, b.ip, 8080, ["--mark", MARK])).toBe(`B 8080 ${a.ip}`);
    expect(await connect(a.ns, b.ip6!, 8080, ["--mark", MARK])).toBe(`B 8080 ${a.ip6}`);
    // A different mark is still captured.
    expect(await connect(a.ns, b.ip, 8080, ["--mark", "0x538"])).toBe(`A 15001 ${a.ip}`);
  });

  it("connections to loopback and to the pod's own IP are not redirected", async () => {
    expect(await connect(a.ns, "127.0.0.1", 8080)).toBe("A 8080 127.0.0.1");
    expect(await connect(a.ns, "::1", 8080)).toBe("A 8080 ::1");
    expect(await connect(a.ns, a.ip, 8080)).toBe(`A 8080 ${a.ip}`);
  });

  it("kubelet probes from the SNAT address reach the app; other node traffic is captured", async () => {
    const node = topo.nodes[0]!;
    await topo.exec(node.ns, "ip", ["addr", "add", `${DEFAULT_REDIRECT_OPTIONS.probeAddress}/32`, "dev", "lo"]);
    await topo.exec(node.ns, "ip", ["addr", "add", `${DEFAULT_REDIRECT_OPTIONS.probeAddress6}/128`, "dev", "lo", "nodad"]);
    expect(await connect(node.ns, a.ip, 8080, ["--source", DEFAULT_REDIRECT_OPTIONS.probeAddress])).toBe(
      `A 8080 ${DEFAULT_REDIRECT_OPTIONS.probeAddress}`,
    );
    expect(await connect(node.ns, a.ip6!, 8080, ["--source", DEFAULT_REDIRECT_OPTIONS.probeAddress6])).toBe(
      `A 8080 ${DEFAULT_REDIRECT_OPTIONS.probeAddress6}`,
    );
    expect(await connect(node.ns, a.ip, 8080)).toBe(`A 15006 ${node.gateway}`);
  });

  it("after removal nothing is redirected any more", async () => {
    const fresh = await topo.addPod(0, "fresh");
    await redirector.apply(fresh.netnsPath);
    expect(await redirector.check(fresh.netnsPath)).toEqual({ state: "in-place", problems: [] });
    await redirector.remove(fresh.netnsPath);
    expect((await redirector.check(fresh.netnsPath)).state).toBe("missing");
    // Pod A keeps its rules (other pods are untouched); after removing them, traffic flows directly.
    expect(await connect(a.ns, b.ip, 8080)).toBe(`A 15001 ${a.ip}`);
    await redirector.remove(a.netnsPath);
    expect(await connect(a.ns, b.ip, 8080)).toBe(`B 8080 ${a.ip}`);
    expect(await connect(b.ns, a.ip, 8080)).toBe(`A 8080 ${b.ip}`);
    await topo.removePod(fresh);
  });
});
