import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";
import { readAll, waitFor, writeAll } from "../fixtures/ztunnel-e2e-cluster.js";
import { startCapture, stopCapture, useMesh } from "../fixtures/ztunnel-e2e-suite.js";

// ztunnel end to end in real netns: 2 nodes × 2 captured pods, one ztunnel process per node
// (2 worker threads each), the test as the node agent. Traffic between captured pods crosses
// as HBONE; captured ↔ uncaptured is passthrough / inbound plaintext.

const MiB = 1024 * 1024;
const APP_PORT = 8080;
/** App that sends 8 MiB and its FIN first, then reads the client's bytes to the end. */
const SERVER_FIRST_PORT = 8081;

function sha(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

function payload(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  return out;
}

describePrivileged("ztunnel in-pod proxies on worker threads", () => {
  /** Remote address seen by the app of each pod, per connection. */
  const seen = new Map<string, string[]>();
  const serverFirst: Promise<Buffer>[] = [];
  const t = useMesh(APP_PORT, {
    uncaptured: 1,
    apps: async (m) => {
      for (const pod of [...m.captured, t.plain]) {
        seen.set(pod.name, []);
        // Echo app that reports who connected: echoes until the client's FIN, then ends.
        await m.app(pod, APP_PORT, (s) => {
          seen.get(pod.name)!.push(s.remoteAddress ?? "");
          s.pipe(s);
        });
      }
      await m.app(t.b0, SERVER_FIRST_PORT, (s) => {
        serverFirst.push(readAll(s));
        void writeAll(s, payload(8 * MiB, 7)).then(() => s.end());
      });
    },
  });

  async function clientHellos(file: string): Promise<string[][]> {
    const { stdout } = await t.mesh.topo.exec(t.mesh.topo.networkNs, "tshark", [
      "-r", file, "-d", "tcp.port==15008,tls", "-Y", "tls.handshake.type == 1", "-T", "fields",
      "-e", "tls.handshake.extensions_alpn_str", "-e", "tls.handshake.extensions_server_name", "-e", "tls.handshake.extensions.supported_version",
    ]);
    return stdout.split("\n").filter((l) => l.trim() !== "").map((l) => l.split("\t"));
  }

  async function echo(from: PodInfo, to: PodInfo, size: number): Promise<Buffer> {
    const c = await t.mesh.dial(from, to.ip, APP_PORT);
    const data = payload(size, size);
    const got = readAll(c);
    await writeAll(c, data);
    c.end();
    const back = await got;
    expect(back.length).toBe(size);
    expect(sha(back)).toBe(sha(data));
    return back;
  }

  it("HBONE on the wire: TLS 1.3 ClientHello with ALPN h2 and no SNI, no plaintext, across nodes and on one node", async () => {
    const marker = Buffer.from("PLAINTEXT-MARKER-".repeat(64));
    const cross = join(t.mesh.dir, "cross.pcap");
    const local = join(t.mesh.dir, "local.pcap");
    // Fresh source pods, so the pools must open (and handshake) new HBONE connections.
    const capNet = await startCapture(t.mesh, t.mesh.topo.networkNs, cross, "tcp port 15008");
    const capNode = await startCapture(t.mesh, t.mesh.topo.node(0).ns, local, "tcp port 15008");
    for (const [from, to] of [[t.a1, t.b0], [t.a1, t.a0]] as const) {
      const c = await t.mesh.dial(from, to.ip, APP_PORT);
      const got = readAll(c);
      c.end(marker);
      expect((await got).equals(marker)).toBe(true);
    }
    await stopCapture(capNet);
    await stopCapture(capNode);
    for (const file of [cross, local]) {
      const raw = await readFile(file);
      expect(raw.length).toBeGreaterThan(1000); // HBONE packets were captured
      expect(raw.includes(Buffer.from("PLAINTEXT-MARKER"))).toBe(false);
      const hellos = await clientHellos(file);
      expect(hellos.length).toBeGreaterThanOrEqual(1);
      for (const [alpn, sni, versions] of hellos) {
        expect(alpn).toBe("h2");
        expect(sni ?? "").toBe("");
        expect(versions).toContain("0x0304");
      }
    }
  });

  it("each proxy worker thread carries its name, so top -H and perf tell the workers apart", async () => {
    const pid = t.mesh.node(0).ztunnel?.pid;
    expect(pid).toBeDefined();
    const tids = await readdir(`/proc/${pid}/task`);
    // A thread may end between the listing and the read: it then has no name to check.
    const names = await Promise.all(tids.map((tid) => readFile(`/proc/${pid}/task/${tid}/comm`, "utf8").then((c) => c.trim(), () => "")));
    expect(names.filter((n) => n.startsWith("ztunnel-w")).sort()).toEqual(["ztunnel-w0", "ztunnel-w1"]);
  });

  it("captured → captured across nodes: echo works and the app sees the client pod's IP", async () => {
    seen.get(t.b0.name)!.length = 0;
    await echo(t.a0, t.b0, 64 * 1024);
    expect(seen.get(t.b0.name)).toEqual([t.a0.ip]);
  });

  it("captured → captured on the same node", async () => {
    seen.get(t.a1.name)!.length = 0;
    await echo(t.a0, t.a1, 64 * 1024);
    expect(seen.get(t.a1.name)).toEqual([t.a0.ip]);
  });

  it("8 MiB each way across nodes, client half-closes first", async () => {
    await echo(t.b0, t.a0, 8 * MiB);
  });

  it("8 MiB each way across nodes, server half-closes first and the client keeps sending", async () => {
    const c = await t.mesh.dial(t.a0, t.b0.ip, SERVER_FIRST_PORT);
    const fromServer = await readAll(c);
    expect(sha(fromServer)).toBe(sha(payload(8 * MiB, 7)));
    expect(c.writable).toBe(true);
    const mine = payload(8 * MiB, 9);
    await writeAll(c, mine);
    c.end();
    await waitFor(() => serverFirst.length === 1, 5_000, () => "server-first app got no connection");
    const atServer = await serverFirst[0]!;
    expect(atServer.length).toBe(mine.length);
    expect(sha(atServer)).toBe(sha(mine));
  });

  it("captured → uncaptured is plain passthrough; uncaptured → captured goes through 15006 with the source kept", async () => {
    const before = (await t.mesh.configDump(1)).counters.inbound.closed;
    seen.get(t.plain.name)!.length = 0;
    await echo(t.a0, t.plain, 32 * 1024);
    expect(seen.get(t.plain.name)).toEqual([t.a0.ip]);
    seen.get(t.b0.name)!.length = 0;
    await echo(t.plain, t.b0, 32 * 1024);
    expect(seen.get(t.b0.name)).toEqual([t.plain.ip]);
    // The connection was proxied by node 1's ztunnel (inbound plaintext), not delivered directly.
    await waitFor(async () => (await t.mesh.configDump(1)).counters.inbound.closed > before, 5_000, () => "no inbound record on node 1");
  });

  it("with 2 workers each pod port has 2 listeners (ss) and both workers accept connections", async () => {
    for (const port of [15001, 15006, 15008]) {
      const lines = await t.mesh.listenersOn(t.b0, port);
      expect(lines, lines.join("\n")).toHaveLength(2);
      for (const l of lines) expect(l).toMatch(/"node",pid=\d+/);
    }
    const dump = await t.mesh.configDump(1);
    const all = dump.workloadState[t.mesh.uid(t.b0)]!.listeners;
    const listeners = all.filter((l) => l.port !== 15053);
    expect(listeners).toHaveLength(6);
    // The DNS proxy's UDP and TCP listeners (127.0.0.1 and ::1) on each worker.
    expect(all.filter((l) => l.port === 15053 && l.address === "127.0.0.1").map((l) => l.worker).sort()).toEqual([0, 0, 1, 1]);
    expect(new Set(listeners.map((l) => l.worker))).toEqual(new Set([0, 1]));
    for (const l of listeners) expect(l.mark).toBe(1337);
    const acceptedBefore = (await t.mesh.configDump(0)).workers.map((w) => w.accepted);
    const inBefore = dump.workers.map((w) => w.accepted);
    for (let i = 0; i < 24; i++) {
      await echo(t.a0, t.b0, 512); // 15001 on node 0
      await echo(t.plain, t.b0, 512); // 15006 on node 1
    }
    await waitFor(
      async () => {
        const out = (await t.mesh.configDump(0)).workers.map((w, i) => w.accepted - (acceptedBefore[i] ?? 0));
        const inn = (await t.mesh.configDump(1)).workers.map((w, i) => w.accepted - (inBefore[i] ?? 0));
        return out.every((n) => n > 0) && inn.every((n) => n > 0) && out.reduce((a, b) => a + b) >= 24;
      },
      5_000,
      () => "connections did not reach both workers",
    );
  });

  it("250 concurrent connections from one pod ride at least 3 HBONE connections (100 streams each at most)", async () => {
    const conns = await Promise.all(
      Array.from({ length: 250 }, async () => {
        const c = await t.mesh.dial(t.a1, t.b1.ip, APP_PORT);
        const got = new Promise<void>((resolve, reject) => {
          c.once("data", () => resolve());
          c.once("error", reject);
        });
        c.write("x");
        await got; // the stream is up end to end
        return c;
      }),
    );
    const { stdout } = await t.mesh.topo.exec(t.b1.ns, "ss", ["-Htn", "state", "established", "( sport = :15008 )"]);
    const hbone = stdout.split("\n").filter((l) => l.trim() !== "");
    expect(hbone.length).toBeGreaterThanOrEqual(3);
    for (const l of hbone) expect(l).toContain(t.a1.ip);
    for (const c of conns) c.destroy();
  });

  it("a state change reaches the workers: a destination switched to TCP is passed through, then back to HBONE", async () => {
    const lastTo = (ip: string): Record<string, unknown> | undefined =>
      t.mesh.accessLog(0).filter((r) => r.direction === "outbound" && r["dst.addr"] === `${ip}:${APP_PORT}`).at(-1);
    await t.mesh.setProtocol(t.b0, "TCP");
    await waitFor(async () => {
      const before = t.mesh.accessLog(0).length;
      await echo(t.a0, t.b0, 128);
      await waitFor(() => t.mesh.accessLog(0).length > before, 3_000, () => "no access record");
      return lastTo(t.b0.ip)?.["dst.hbone_addr"] === undefined;
    }, 10_000, () => "the workers never saw the new state");
    await t.mesh.setProtocol(t.b0, "HBONE");
    await waitFor(async () => {
      const before = t.mesh.accessLog(0).length;
      await echo(t.a0, t.b0, 128);
      await waitFor(() => t.mesh.accessLog(0).length > before, 3_000, () => "no access record");
      return lastTo(t.b0.ip)?.["dst.hbone_addr"] === `${t.b0.ip}:15008`;
    }, 10_000, () => "the workers never saw the state change back");
  });
});
