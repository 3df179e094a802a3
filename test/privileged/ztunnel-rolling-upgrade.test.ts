import type { ChildProcess } from "node:child_process";
import { expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import { killAndWait } from "../harness/netns.js";
import type { PodInfo } from "../harness/topology.js";
import { readAll, waitFor, writeAll } from "../fixtures/ztunnel-e2e-cluster.js";
import { useMesh } from "../fixtures/ztunnel-e2e-suite.js";

// Issue 16 item 5: a rolling upgrade refuses nothing. A second ztunnel starts beside the first
// on node 0 (same ZDS socket; its node-level endpoints on other ports, as a second pod would
// have its own netns), gets the snapshot, binds its SO_REUSEPORT listeners in every pod and
// reports ready; the old one gets SIGTERM, stops accepting and drains. Meanwhile a client loop
// runs short connections through node 0 in both directions, and 4 long transfers run.

const APP_PORT = 8080;
const SHORT = 5_000;
const CONCURRENCY = 16;
/** Long transfers go on this long after the old ztunnel got SIGTERM (well inside its drain deadline). */
const LONG_AFTER_SIGTERM_MS = 1_500;

describePrivileged("ztunnel rolling upgrade", () => {
  const t = useMesh(APP_PORT, { env: { CONNECTION_TERMINATION_DEADLINE: "10s" } });

  async function short(from: PodInfo, to: PodInfo, i: number): Promise<string | undefined> {
    try {
      const c = await t.mesh.dial(from, to.ip, APP_PORT);
      const failed = new Promise<string>((resolve) => c.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message)));
      const msg = Buffer.from(`short ${i}`);
      const got = readAll(c);
      await writeAll(c, msg);
      c.end();
      const back = await Promise.race([got.then((b) => b.toString()), failed]);
      return back === msg.toString() ? undefined : `got ${JSON.stringify(back)}`;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? String(err);
    }
  }

  let sigtermAt: number | undefined;

  /** Streams until LONG_AFTER_SIGTERM_MS after the handoff, echoed back in full. */
  async function long(from: PodInfo, to: PodInfo): Promise<number> {
    const c = await t.mesh.dial(from, to.ip, APP_PORT);
    const got = readAll(c);
    let sent = 0;
    while (sigtermAt === undefined || Date.now() < sigtermAt + LONG_AFTER_SIGTERM_MS) {
      const chunk = Buffer.alloc(16 * 1024, sent & 0xff);
      await writeAll(c, chunk);
      sent += chunk.length;
      await new Promise((r) => setTimeout(r, 5));
    }
    c.end();
    expect((await got).length).toBe(sent);
    return sent;
  }

  it("≥5,000 short connections and 4 long transfers during the handoff: nothing refused or reset", async () => {
    const old = t.mesh.node(0).ztunnel as ChildProcess;
    const failures: string[] = [];
    let done = 0;
    let stop = false;
    const pairs: Array<[PodInfo, PodInfo]> = [
      [t.a0, t.b0], // outbound on node 0
      [t.b1, t.a1], // inbound HBONE on node 0
      [t.a1, t.a0], // both on node 0
    ];
    const loop = (async () => {
      let i = 0;
      const workers = Array.from({ length: CONCURRENCY }, async () => {
        while (!stop || done < SHORT) {
          const n = i++;
          const [from, to] = pairs[n % pairs.length]!;
          const err = await short(from, to, n);
          if (err !== undefined) failures.push(`${from.name}→${to.name} #${n}: ${err}`);
          done++;
          if (stop && done >= SHORT) return;
        }
      });
      await Promise.all(workers);
    })();
    // Traffic is flowing through the old ztunnel; start the long transfers and the new one beside it.
    await waitFor(() => done > 200, 20_000, () => `no traffic: ${failures.slice(0, 3).join("; ")}`);
    const longs = Promise.all([long(t.a0, t.b0), long(t.a1, t.b1), long(t.b0, t.a0), long(t.b1, t.a1)]);
    t.mesh.node(0).ztunnel = undefined;
    const next = await t.mesh.startZtunnel(0, { ADMIN_ADDR: "127.0.0.1:16000", STATS_ADDR: "0.0.0.0:16020", READINESS_ADDR: "0.0.0.0:16021" }, false);
    await waitFor(async () => (await t.mesh.http(0, 16021, "/healthz/ready").catch(() => ({ status: 0 }))).status === 200, 20_000, () => "new ztunnel not ready");
    // Both have every pod's listeners now (SO_REUSEPORT): 2 workers × 2 processes.
    expect((await t.mesh.listenersOn(t.a0, 15001)).length).toBe(4);
    // The kernel hands the old listeners' queued connections to the new ones (tcp_migrate_req).
    const { stdout } = await t.mesh.topo.exec(t.a0.ns, "sysctl", ["-n", "net.ipv4.tcp_migrate_req"]);
    expect(stdout.trim()).toBe("1");
    const handoffAt = done;
    sigtermAt = Date.now();
    await killAndWait(old, "SIGTERM");
    // The old one drained: it exited only after the long transfers it carried had finished.
    expect(Date.now() - sigtermAt).toBeGreaterThanOrEqual(LONG_AFTER_SIGTERM_MS - 100);
    const afterOld = done;
    stop = true;
    await loop;
    const sent = await longs;
    expect(sent.every((n) => n > 0)).toBe(true);
    expect(done).toBeGreaterThanOrEqual(SHORT);
    expect(done - handoffAt).toBeGreaterThan(0);
    const errors = (): string =>
      [0, 1]
        .flatMap((n) => t.mesh.accessLog(n).filter((l) => l.error !== undefined).map((l) => `node ${n}: ${String(l["src.workload"])}→${String(l["dst.addr"])} ${String(l.direction)} ${String(l.error)}`))
        .slice(0, 10)
        .join("\n");
    expect(failures, `${failures.length} of ${done} failed (handoff at ${handoffAt}, old exited at ${afterOld}): ${failures.slice(0, 5).join("; ")}\n${errors()}`).toEqual([]);
    expect(next.exitCode).toBeNull();
    expect((await t.mesh.listenersOn(t.a0, 15001)).length).toBe(2);
  });
});
