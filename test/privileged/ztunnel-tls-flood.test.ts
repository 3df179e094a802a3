import { readFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import { useMesh } from "../fixtures/ztunnel-e2e-suite.js";

// Issue 16: repeated floods of unfinished TLS on 15008 grew ztunnel's RSS from 100 to 372 MB.
// Pending handshakes are bounded per pod and per worker now: beyond the bound a new connection
// is closed at once, the memory a flood takes is bounded and given back, and other pods keep
// their HBONE traffic.

const APP_PORT = 8080;
const FLOOD = 2_000;
const ROUNDS = 3;

describePrivileged("ztunnel unfinished-TLS flood on 15008", () => {
  const t = useMesh(APP_PORT, { uncaptured: 1 });

  async function rssMb(node: number): Promise<number> {
    const pid = t.mesh.node(node).ztunnel?.pid;
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? "0") / 1024;
  }

  /** A connection that starts a TLS record and never finishes it; resolves once connected. */
  function unfinished(): Promise<Socket | undefined> {
    return new Promise((resolve) => {
      const s = t.mesh.factory(t.plain.netnsPath).connectTcp({ host: t.a0.ip, port: 15008 });
      s.on("error", () => resolve(undefined));
      s.once("connect", () => {
        // A handshake record header announcing 512 bytes, then 10 of them.
        s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0]));
        resolve(s);
      });
    });
  }

  it("pending handshakes stay bounded, memory comes back, and other pods keep working", async () => {
    await t.echo(t.b0, t.a1);
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
      await t.echo(t.b0, t.a1);
      await t.echo(t.a1, t.b0);
      for (const s of socks) s.destroy();
    }
    // Far fewer than the flood were kept by ztunnel (the per-pod bound over 2 workers), the
    // rest were closed at once.
    expect(maxHeld).toBeLessThan(FLOOD / 2);
    await new Promise((r) => setTimeout(r, 2_000));
    const after = await rssMb(0);
    expect(after - before, `RSS ${before.toFixed(0)} → ${after.toFixed(0)} MB`).toBeLessThan(100);
    expect(t.mesh.logs(0, 5000)).toMatch(/too many unfinished HBONE handshakes/);
    await t.echo(t.b0, t.a0);
    console.error(`TLS flood: ${ROUNDS}×${FLOOD} unfinished handshakes, at most ${maxHeld} held; RSS ${before.toFixed(0)} → ${after.toFixed(0)} MB`);
  });
});
