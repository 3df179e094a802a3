import type { ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import { killAndWait } from "../harness/netns.js";
import type { PodInfo } from "../harness/topology.js";
import { waitFor } from "../fixtures/ztunnel-e2e-cluster.js";
import { startCapture, stopCapture, useMesh } from "../fixtures/ztunnel-e2e-suite.js";

// Issue 16: kill -9 of ztunnel under load fails closed — while it is gone the pods' traffic is
// still redirected to its (absent) listeners, so nothing crosses the node link in plaintext —
// and a restarted ztunnel has every pod's listeners back from the ZDS snapshot within 2 s.

const APP_PORT = 8080;
const MARKER = "KILL9-PLAINTEXT-MARKER";

describePrivileged("ztunnel kill -9 under load", () => {
  const t = useMesh(APP_PORT);

  /** One short echo; false when it failed or took longer than 5 s (the socket is destroyed). */
  async function attempt(from: PodInfo, to: PodInfo, i: number): Promise<boolean> {
    const s = t.mesh.factory(from.netnsPath).connectTcp({ host: to.ip, port: APP_PORT });
    s.on("error", () => undefined);
    const msg = `${MARKER} ${i}`;
    const result = await new Promise<boolean>((resolve) => {
      let got = "";
      const timer = setTimeout(() => resolve(false), 5_000);
      s.once("connect", () => s.end(msg));
      s.on("data", (d: Buffer) => (got += d.toString()));
      s.once("close", () => {
        clearTimeout(timer);
        resolve(got === msg);
      });
    });
    s.destroy();
    return result;
  }

  it("no plaintext on the node link while ztunnel is gone, and listeners are back ≤ 2 s after the snapshot", async () => {
    const pcap = join(t.mesh.dir, "kill9.pcap");
    const tcpdump = await startCapture(t.mesh, t.mesh.topo.networkNs, pcap, "tcp");
    let stop = false;
    let ok = 0;
    let failed = 0;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        const results = await Promise.all([attempt(t.a0, t.b0, i), attempt(t.a1, t.b0, i), attempt(t.b0, t.a0, i)]);
        for (const r of results) r ? ok++ : failed++;
      }
    })();
    await waitFor(() => ok > 50, 20_000, () => "no traffic before the kill");
    const victim = t.mesh.node(0).ztunnel as ChildProcess;
    await killAndWait(victim, "SIGKILL");
    const okAtKill = ok;
    // While it is gone, connections fail (closed), they do not go around it.
    await waitFor(() => failed >= 20, 10_000, () => "connections kept succeeding with ztunnel dead");
    expect((await t.mesh.listenersOn(t.a0, 15001)).length).toBe(0);
    const spawned = Date.now();
    t.mesh.node(0).ztunnel = undefined;
    await t.mesh.startZtunnel(0, {}, false);
    // The ZDS snapshot reaches the new process as soon as it connects; time its listeners.
    await waitFor(() => t.mesh.logs(0, 200).includes("connected to the node agent"), 20_000, () => `never connected:\n${t.mesh.logs(0, 20)}`);
    const connectedAt = Date.now();
    await waitFor(async () => (await t.mesh.listenersOn(t.a0, 15001)).length === 2 && (await t.mesh.listenersOn(t.a1, 15008)).length === 2, 10_000, () => "listeners not back");
    const back = Date.now();
    expect(back - connectedAt).toBeLessThanOrEqual(2_000);
    expect(back - spawned).toBeLessThanOrEqual(2_000);
    await t.mesh.waitReady(0);
    const okAtRestart = ok;
    await waitFor(() => ok > okAtRestart + 50, 20_000, () => `traffic did not recover: ok ${ok} (at restart ${okAtRestart}), failed ${failed}\n${t.mesh.logs(0, 30)}`);
    stop = true;
    await load;
    await stopCapture(tcpdump);
    expect(okAtKill).toBeGreaterThan(0);
    const raw = await readFile(pcap);
    expect(raw.length).toBeGreaterThan(1000); // HBONE traffic was captured
    expect(raw.includes(Buffer.from(MARKER))).toBe(false);
    // No packet to or from the app port crossed the node link (only HBONE on 15008).
    const { stdout } = await t.mesh.topo.exec(t.mesh.topo.networkNs, "tcpdump", ["-r", pcap, "-n", `tcp port ${APP_PORT}`]);
    expect(stdout.trim()).toBe("");
    console.error(`kill -9: ${failed} attempts failed closed while ztunnel was gone; respawn → listeners ${back - spawned} ms (snapshot → listeners ${back - connectedAt} ms)`);
  });
});
