import { afterAll, beforeAll, expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import { Topology } from "../harness/topology.js";
import { SYSTEM_PYTHON, TAG_SERVER, TCP_CLIENT, waitForLine } from "../harness/child-output.js";

describePrivileged("topology: pods reach each other on the same node and across nodes", () => {
  let topo: Topology;

  beforeAll(async () => {
    topo = await Topology.create({ nodes: 2, podsPerNode: 2, ipv6: true });
  });
  afterAll(async () => {
    await topo?.destroy();
  });

  it("names carry the run id and stay within 15 characters; subnets are per node", () => {
    const names = [topo.networkNs, ...topo.nodes.map((n) => n.ns), ...topo.pods.flatMap((p) => [p.ns, p.hostVeth])];
    for (const n of names) {
      expect(n).toContain(topo.id);
      expect(n.length).toBeLessThanOrEqual(15);
    }
    expect(topo.pods).toHaveLength(4);
    expect(topo.nodes[0]!.podCidr).not.toBe(topo.nodes[1]!.podCidr);
    expect(topo.pod(1, 1).node).toBe(1);
    expect(() => topo.pod(0, 5)).toThrow(/no pod #5/);
  });

  it("lo is up in every namespace and ip_forward is on in node namespaces", async () => {
    for (const ns of [topo.networkNs, ...topo.nodes.map((n) => n.ns), ...topo.pods.map((p) => p.ns)]) {
      const { stdout } = await topo.exec(ns, "ip", ["-o", "link", "show", "lo"]);
      expect(stdout).toMatch(/state UNKNOWN|,UP/);
    }
    for (const node of topo.nodes) {
      const { stdout } = await topo.exec(node.ns, "sysctl", ["-n", "net.ipv4.ip_forward"]);
      expect(stdout.trim()).toBe("1");
    }
  });

  it("pings across the same node and across nodes, IPv4 and IPv6", async () => {
    const a = topo.pod(0, 0);
    for (const target of [topo.pod(0, 1), topo.pod(1, 0)]) {
      await topo.ping(a.ns, target.ip);
      await topo.ping(a.ns, target.ip6!);
    }
    // The node itself and the other node are reachable too.
    await topo.ping(a.ns, topo.nodes[1]!.ip);
    await topo.ping(a.ns, topo.nodes[1]!.ip6!);
  });

  it("TCP connects from a pod to pods on the same node and on another node", async () => {
    const server = topo.spawnNode(topo.pod(1, 1).ns, TAG_SERVER, ["srv", "8080"]);
    await waitForLine(server, "ready");
    const server2 = topo.spawnNode(topo.pod(0, 1).ns, TAG_SERVER, ["srv2", "8080"]);
    await waitForLine(server2, "ready");
    const from = topo.pod(0, 0);

    const cross = await topo.exec(from.ns, SYSTEM_PYTHON, [TCP_CLIENT, topo.pod(1, 1).ip, "8080"]);
    expect(cross.stdout.trim()).toBe(`srv 8080 ${from.ip}`);
    const cross6 = await topo.exec(from.ns, SYSTEM_PYTHON, [TCP_CLIENT, topo.pod(1, 1).ip6!, "8080"]);
    expect(cross6.stdout.trim()).toBe(`srv 8080 ${from.ip6}`);
    const same = await topo.exec(from.ns, SYSTEM_PYTHON, [TCP_CLIENT, topo.pod(0, 1).ip, "8080"]);
    expect(same.stdout.trim()).toBe(`srv2 8080 ${from.ip}`);
  });

  it("addPod and removePod: a new pod is reachable, a removed pod's netns and veth are gone", async () => {
    const pod = await topo.addPod(1, "late");
    expect(pod.name).toBe("late");
    await topo.ping(topo.pod(0, 0).ns, pod.ip);
    const sleeper = topo.spawn(pod.ns, "sleep", ["1000"]);
    await topo.removePod(pod);
    expect(sleeper.exitCode !== null || sleeper.signalCode !== null).toBe(true);
    const { stdout } = await topo.exec(topo.nodes[1]!.ns, "ip", ["-o", "link"]);
    expect(stdout).not.toContain(pod.hostVeth);
    const list = await topo.exec(topo.nodes[1]!.ns, "ip", ["netns", "list"]);
    expect(list.stdout).not.toContain(pod.ns);
    expect(topo.pods).not.toContain(pod);
    await expect(topo.exec(pod.ns, "true", [])).rejects.toThrow(/not part of topology/);
  });
});
