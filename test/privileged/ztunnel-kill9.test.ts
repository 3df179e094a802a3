import type { ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import { killAndWait } from "../harness/netns.js";
import type { PodInfo } from "../harness/topology.js";
import { Mesh, waitFor } from "../fixtures/ztunnel-e2e-cluster.js";

// Issue 16: kill -9 of ztunnel under load fails closed — while it is gone the pods' traffic is
// still redirected to its (absent) listeners, so nothing crosses the node link in plaintext —
// and a restarted ztunnel has every pod's listeners back from the ZDS snapshot within 2 s.

const APP_PORT = 8080;
const MARKER = "KILL9-PLAINTEXT-MARKER";

describePrivileged("ztunnel kill -9 under load", () => {
  let mesh: Mesh;
  let a0: PodInfo;
  let a1: PodInfo;
  let b0: PodInfo;

  beforeAll(async () => {
    mesh = await Mesh.create();
    a0 = mesh.topo.pod(0, 0);
    a1 = mesh.topo.pod(0, 1);
    b0 = mesh.topo.pod(1, 0);
    for (const pod of mesh.captured) await mesh.app(pod, APP_PORT, (s) => s.pipe(s));
    await Promise.all([mesh.startZtunnel(0), mesh.startZtunnel(1)]);
  });

  afterAll(async () => {
    await mesh?.destroy();
  });

  /** tcpdump on the node link (the network netns' bridge); resolves once capturing. */
  async function capture(file: string): Promise<ChildProcess> {
    const child = mesh.topo.spawn(mesh.topo.networkNs, "tcpdump", ["--immediate-mode", "-i", "any", "-U", "-n", "-s", "0", "-w", file, "tcp"]);
    await new Promise<void>((resolve, reject) => {
      let err = "";
      const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 10_000);
      child.stderr?.on("data", (d: Buffer) => {
        err += d.toString();
        if (err.includes("listening on")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    return child;
  }

  /** One short echo; false when it failed or took longer than 5 s (the socket is destroyed). */
  async function attempt(from: PodInfo, to: PodInfo, i: number): Promise<boolean> {
    const s = mesh.factory(from.netnsPath).connectTcp({ host: to.ip, port: APP_PORT });
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
    const pcap = join(mesh.dir, "kill9.pcap");
    const tcpdump = await capture(pcap);
    let stop = false;
    let ok = 0;
    let failed = 0;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        const results = await Promise.all([attempt(a0, b0, i), attempt(a1, b0, i), attempt(b0, a0, i)]);
        for (const r of results) r ? ok++ : failed++;
      }
    })();
    await waitFor(() => ok > 50, 20_000, () => "no traffic before the kill");
    const victim = mesh.node(0).ztunnel as ChildProcess;
    await killAndWait(victim, "SIGKILL");
    const okAtKill = ok;
    // While it is gone, connections fail (closed), they do not go around it.
    await waitFor(() => failed >= 20, 10_000, () => "connections kept succeeding with ztunnel dead");
    expect((await mesh.listenersOn(a0, 15001)).length).toBe(0);
    const spawned = Date.now();
    mesh.node(0).ztunnel = undefined;
    await mesh.startZtunnel(0, {}, false);
    // The ZDS snapshot reaches the new process as soon as it connects; time its listeners.
    await waitFor(() => mesh.logs(0, 200).includes("connected to the node agent"), 20_000, () => `never connected:\n${mesh.logs(0, 20)}`);
    const connectedAt = Date.now();
    await waitFor(async () => (await mesh.listenersOn(a0, 15001)).length === 2 && (await mesh.listenersOn(a1, 15008)).length === 2, 10_000, () => "listeners not back");
    const back = Date.now();
    expect(back - connectedAt).toBeLessThanOrEqual(2_000);
    expect(back - spawned).toBeLessThanOrEqual(2_000);
    await mesh.waitReady(0);
    const okAtRestart = ok;
    await waitFor(() => ok > okAtRestart + 50, 20_000, () => `traffic did not recover: ok ${ok} (at restart ${okAtRestart}), failed ${failed}\n${mesh.logs(0, 30)}`);
    stop = true;
    await load;
    await killAndWait(tcpdump, "SIGINT");
    expect(okAtKill).toBeGreaterThan(0);
    const raw = await readFile(pcap);
    expect(raw.length).toBeGreaterThan(1000); // HBONE traffic was captured
    expect(raw.includes(Buffer.from(MARKER))).toBe(false);
    // No packet to or from the app port crossed the node link (only HBONE on 15008).
    const { stdout } = await mesh.topo.exec(mesh.topo.networkNs, "tcpdump", ["-r", pcap, "-n", `tcp port ${APP_PORT}`]);
    expect(stdout.trim()).toBe("");
    console.error(`kill -9: ${failed} attempts failed closed while ztunnel was gone; respawn → listeners ${back - spawned} ms (snapshot → listeners ${back - connectedAt} ms)`);
  });
});
