import { expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";
import { readAll, waitFor } from "../fixtures/ztunnel-e2e-cluster.js";
import { useMesh } from "../fixtures/ztunnel-e2e-suite.js";

// Dual-stack pods: the same in-pod proxies (dual-stack [::] listeners) carry IPv6 traffic over
// HBONE between nodes, and inbound plaintext keeps an IPv6 source.

const APP_PORT = 8080;

describePrivileged("ztunnel in-pod proxies with IPv6", () => {
  const seen: string[] = [];
  const t = useMesh(APP_PORT, {
    ipv6: true,
    podsPerNode: 1,
    uncaptured: 1,
    workers: 1,
    apps: (m) =>
      m.app(t.b0, APP_PORT, (s) => {
        seen.push(s.remoteAddress ?? "");
        s.pipe(s);
      }),
  });

  async function echo(from: PodInfo, host: string): Promise<void> {
    const c = await t.mesh.dial(from, host, APP_PORT);
    const got = readAll(c);
    c.end("hello over v6");
    expect((await got).toString()).toBe("hello over v6");
  }

  it("captured → captured across nodes over IPv6 HBONE; the app sees the client's IPv6 address", async () => {
    const before = (await t.mesh.configDump(1)).counters.inbound.closed;
    seen.length = 0;
    await echo(t.a0, t.b0.ip6!);
    expect(seen).toEqual([t.a0.ip6]);
    // Close counters leave the worker within its flush delay (50 ms), not synchronously.
    let closed = before;
    await waitFor(
      async () => (closed = (await t.mesh.configDump(1)).counters.inbound.closed) > before,
      5_000,
      () => `node 1 counted no closed inbound connection (still ${closed})`,
    );
  });

  it("uncaptured → captured over IPv6 goes through 15006 with the IPv6 source kept", async () => {
    seen.length = 0;
    await echo(t.plain, t.b0.ip6!);
    expect(seen).toEqual([t.plain.ip6]);
  });
});
