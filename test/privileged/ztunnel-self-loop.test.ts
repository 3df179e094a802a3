import { readdir } from "node:fs/promises";
import type { Socket } from "node:net";
import { expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";
import { waitFor } from "../fixtures/ztunnel-e2e-cluster.js";
import { useMesh } from "../fixtures/ztunnel-e2e-suite.js";

// Issue 16 defect 1 (self-loop): an enrolled pod dialling 127.0.0.1:15001 itself made ztunnel
// pass the connection through to its own outbound listener, marked, again and again (20,000
// fds in 2.5 s, every other pod starved). Now the route refuses it: the client gets a reset,
// ztunnel writes one access line per attempt, and the neighbours lose nothing.

const APP_PORT = 8080;
const ATTEMPTS = 5;

describePrivileged("ztunnel self-loop protection", () => {
  const t = useMesh(APP_PORT);

  async function fdCount(node: number): Promise<number> {
    return (await readdir(`/proc/${t.pidOf(node)}/fd`)).length;
  }

  /** Dials from a pod; resolves with how the connection ended and what it received. */
  async function attempt(from: PodInfo, host: string, port: number): Promise<{ error: string | undefined; bytes: number }> {
    const s: Socket = t.mesh.factory(from.netnsPath).connectTcp({ host, port });
    let bytes = 0;
    s.on("data", (d: Buffer) => (bytes += d.length));
    const error = await new Promise<string | undefined>((resolve) => {
      s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      s.once("close", () => resolve(undefined));
      s.once("connect", () => s.write("hello"));
    });
    s.destroy();
    return { error, bytes };
  }

  it("a pod dialling 127.0.0.1:15001 is refused with one access line per attempt; fds stay bounded; neighbours on both nodes keep working", async () => {
    const fdsBefore = await fdCount(0);
    const linesBefore = t.mesh.accessLog(0).length;
    // Neighbour traffic runs while the loop attempts are made.
    const neighbours = (async () => {
      for (let i = 0; i < 10; i++) await Promise.all([t.echo(t.a1, t.b0), t.echo(t.b0, t.a1), t.echo(t.a1, t.a0)]);
    })();
    const started = Date.now();
    for (let i = 0; i < ATTEMPTS; i++) {
      const r = await attempt(t.a0, "127.0.0.1", 15001);
      expect(r.bytes).toBe(0);
      expect(r.error).toBe("ECONNRESET");
    }
    // Each refusal is immediate: no retry storm holding the client for seconds.
    expect(Date.now() - started).toBeLessThan(5_000);
    await neighbours;
    await waitFor(
      () => t.mesh.accessLog(0).filter((l) => String(l.error ?? "").includes("self-loop")).length >= ATTEMPTS,
      5_000,
      () => `no self-loop access lines:\n${t.mesh.logs(0, 20)}`,
    );
    const loops = t.mesh.accessLog(0).filter((l) => String(l.error ?? "").includes("self-loop"));
    expect(loops).toHaveLength(ATTEMPTS);
    for (const l of loops) expect(l).toMatchObject({ direction: "outbound", "src.workload": t.a0.name, "dst.addr": "127.0.0.1:15001", response_flags: "DPE" });
    // One line per attempt from a0 (no recursion), plus the neighbours' own lines.
    const fromA0 = t.mesh.accessLog(0).slice(linesBefore).filter((l) => l["src.workload"] === t.a0.name && l.direction === "outbound");
    expect(fromA0).toHaveLength(ATTEMPTS);
    expect(await fdCount(0)).toBeLessThan(fdsBefore + 50);
    // The refusal is counted once per attempt (connections_failed, source reporter, flag DPE).
    const metrics = async (): Promise<number> => {
      const body = (await t.mesh.http(0, 15020, "/metrics")).body;
      let sum = 0;
      for (const line of body.split("\n")) {
        if (!line.startsWith("istio_tcp_connections_failed_total{")) continue;
        if (!line.includes(`source_workload="${t.a0.name}"`) || !line.includes('response_flags="DPE"')) continue;
        sum += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
      return sum;
    };
    await waitFor(async () => (await metrics()) >= ATTEMPTS, 5_000, () => "no failed-connection count for the loop attempts");
    expect(await metrics()).toBe(ATTEMPTS);
  });

  it("the pod's own IP on 15001 and loopback on 15006 are refused too; the pod itself keeps working", async () => {
    // (15008 on loopback reaches the HBONE server, which wants mTLS with a mesh certificate
    // before anything is forwarded: no loop there.)
    for (const [host, port] of [[t.a0.ip, 15001], ["127.0.0.1", 15006]] as const) {
      const r = await attempt(t.a0, host, port);
      expect(r.error, `${host}:${port}`).toBe("ECONNRESET");
      expect(r.bytes).toBe(0);
    }
    await t.echo(t.a0, t.b0);
    await t.echo(t.a0, t.a1);
  });
});
