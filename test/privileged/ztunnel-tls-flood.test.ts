import { readFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";
import { Mesh, readAll, writeAll } from "../fixtures/ztunnel-e2e-cluster.js";

// Issue 16: repeated floods of unfinished TLS on 15008 grew ztunnel's RSS from 100 to 372 MB.
// Pending handshakes are bounded per pod and per worker now: beyond the bound a new connection
// is closed at once, the memory a flood takes is bounded and given back, and other pods keep
// their HBONE traffic.

const APP_PORT = 8080;
const FLOOD = 2_000;
const ROUNDS = 3;

describePrivileged("ztunnel unfinished-TLS flood on 15008", () => {
  let mesh: Mesh;
  let a0: PodInfo;
  let a1: PodInfo;
  let b0: PodInfo;
  let plain: PodInfo;

  beforeAll(async () => {
    mesh = await Mesh.create({ uncaptured: 1 });
    a0 = mesh.topo.pod(0, 0);
    a1 = mesh.topo.pod(0, 1);
    b0 = mesh.topo.pod(1, 0);
    plain = mesh.uncaptured[0]!;
    for (const pod of mesh.captured) await mesh.app(pod, APP_PORT, (s) => s.pipe(s));
    await Promise.all([mesh.startZtunnel(0), mesh.startZtunnel(1)]);
  });

  afterAll(async () => {
    await mesh?.destroy();
  });

  async function rssMb(node: number): Promise<number> {
    const pid = mesh.node(node).ztunnel?.pid;
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? "0") / 1024;
  }

  /** A connection that starts a TLS record and never finishes it; resolves once connected. */
  function unfinished(): Promise<Socket | undefined> {
    return new Promise((resolve) => {
      const s = mesh.factory(plain.netnsPath).connectTcp({ host: a0.ip, port: 15008 });
      s.on("error", () => resolve(undefined));
      s.once("connect", () => {
        // A handshake record header announcing 512 bytes, then 10 of them.
        s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0]));
        resolve(s);
      });
    });
  }

  async function echo(from: PodInfo, to: PodInfo): Promise<void> {
    const c = await mesh.dial(from, to.ip, APP_PORT);
    const got = readAll(c);
    await writeAll(c, Buffer.from(`ping ${from.name}`));
    c.end();
    expect((await got).toString()).toBe(`ping ${from.name}`);
  }

  it("pending handshakes stay bounded, memory comes back, and other pods keep working", async () => {
    await echo(b0, a1);
    const before = await rssMb(0);
    let maxHeld = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const socks: Socket[] = [];
      for (let i = 0; i < FLOOD; i += 100) {
        const batch = await Promise.all(Array.from({ length: 100 }, () => unfinished()));
        for (const s of batch) if (s !== undefined) socks.push(s);
      }
      await new Promise((r) => setTimeout(r, 500));
      const held = socks.filter((s) => !s.destroyed && s.readyState === "open").length;
      maxHeld = Math.max(maxHeld, held);
      // Neighbours on the same node keep their HBONE traffic during the flood.
      await echo(b0, a1);
      await echo(a1, b0);
      for (const s of socks) s.destroy();
    }
    // Far fewer than the flood were kept by ztunnel (the per-pod bound over 2 workers), the
    // rest were closed at once.
    expect(maxHeld).toBeLessThan(FLOOD / 2);
    await new Promise((r) => setTimeout(r, 2_000));
    const after = await rssMb(0);
    expect(after - before, `RSS ${before.toFixed(0)} → ${after.toFixed(0)} MB`).toBeLessThan(100);
    expect(mesh.logs(0, 5000)).toMatch(/too many unfinished HBONE handshakes/);
    await echo(b0, a0);
    console.error(`TLS flood: ${ROUNDS}×${FLOOD} unfinished handshakes, at most ${maxHeld} held; RSS ${before.toFixed(0)} → ${after.toFixed(0)} MB`);
  });
});
