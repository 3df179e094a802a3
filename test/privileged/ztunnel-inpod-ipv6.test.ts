import { afterAll, beforeAll, expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";
import { Mesh, readAll, waitFor } from "../fixtures/ztunnel-e2e-cluster.js";

// Dual-stack pods: the same in-pod proxies (dual-stack [::] listeners) carry IPv6 traffic over
// HBONE between nodes, and inbound plaintext keeps an IPv6 source.

const APP_PORT = 8080;

describePrivileged("ztunnel in-pod proxies with IPv6", () => {
  let mesh: Mesh;
  let a: PodInfo;
  let b: PodInfo;
  let plain: PodInfo;
  const seen: string[] = [];

  beforeAll(async () => {
    mesh = await Mesh.create({ ipv6: true, podsPerNode: 1, uncaptured: 1, workers: 1 });
    a = mesh.topo.pod(0, 0);
    b = mesh.topo.pod(1, 0);
    plain = mesh.uncaptured[0]!;
    await mesh.app(b, APP_PORT, (s) => {
      seen.push(s.remoteAddress ?? "");
      s.pipe(s);
    });
    await Promise.all([mesh.startZtunnel(0), mesh.startZtunnel(1)]);
  });

  afterAll(async () => {
    await mesh?.destroy();
  });

  async function echo(from: PodInfo, host: string): Promise<void> {
    const c = await mesh.dial(from, host, APP_PORT);
    const got = readAll(c);
    c.end("hello over v6");
    expect((await got).toString()).toBe("hello over v6");
  }

  it("captured → captured across nodes over IPv6 HBONE; the app sees the client's IPv6 address", async () => {
    const before = (await mesh.configDump(1)).counters.inbound.closed;
    seen.length = 0;
    await echo(a, b.ip6!);
    expect(seen).toEqual([a.ip6]);
    // Close counters leave the worker within its flush delay (50 ms), not synchronously.
    let closed = before;
    await waitFor(
      async () => (closed = (await mesh.configDump(1)).counters.inbound.closed) > before,
      5_000,
      () => `node 1 counted no closed inbound connection (still ${closed})`,
    );
  });

  it("uncaptured → captured over IPv6 goes through 15006 with the IPv6 source kept", async () => {
    seen.length = 0;
    await echo(plain, b.ip6!);
    expect(seen).toEqual([plain.ip6]);
  });
});
