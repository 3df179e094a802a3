import type { Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createSocket, NetnsHandle } from "../../src/native/index.js";
import { socketConnectFromFd } from "../../src/sockets/fd.js";
import type { SocketFactory } from "../../src/sockets/socket-factory.js";
import { HbonePool, type HboneStream } from "../../src/ztunnel/proxy/hbone-client.js";
import { LocalCa } from "../../src/ztunnel/tls/ca.js";
import { CertManager } from "../../src/ztunnel/tls/cert-manager.js";
import type { PodInfo } from "../../src/demo/topology.js";
import { describePrivileged } from "../harness/privileged.js";
import { Mesh, waitFor } from "../fixtures/ztunnel-e2e-cluster.js";
import { nameEchoApps } from "../fixtures/ztunnel-e2e-suite.js";
import { id } from "../fixtures/ztunnel-pki.js";

// Inbound HBONE connections are spread over a node's proxy workers (worker/hbone-balance.ts),
// tested so that the test cannot pass by luck: each worker listens on 15008 with SO_REUSEPORT
// and the kernel picks one by a hash of the 4-tuple, so the test chooses its 4-tuples. An HBONE
// client (this process, from a pod's netns, with a certificate of the mesh's root) first finds
// two source ports whose connections the kernel gives to worker 0 (one probe connection at a
// time: with no other connection open the balancer keeps it where it was accepted), then opens
// two connections from those ports. Left to the kernel both land on worker 0; the balancer must
// serve them on workers 0 and 1, each relaying.

const PORT = 8080;
const HBONE_PORT = 15008;

describePrivileged("inbound HBONE connections across workers, 4-tuples chosen", () => {
  let mesh: Mesh;
  let certs: CertManager;
  const open: Array<{ pool: HbonePool; tcp: Socket[] }> = [];

  beforeAll(async () => {
    mesh = await Mesh.create({ workers: 2, uncapturedOnNode0: 1 });
    await nameEchoApps(mesh, [PORT]);
    await Promise.all([mesh.startZtunnel(0), mesh.startZtunnel(1)]);
    certs = new CertManager(await LocalCa.fromDir(join(mesh.dir, "ca")));
  }, 60_000);

  afterAll(async () => {
    for (const c of open) closeConnection(c);
    await certs?.close();
    await mesh?.destroy();
  });

  function closeConnection(c: { pool: HbonePool; tcp: Socket[] }): void {
    // A reset leaves no TIME_WAIT behind, so the source port can be used again.
    for (const s of c.tcp) s.resetAndDestroy();
    c.pool.destroy();
  }

  /** Sockets from `from`'s netns, bound to `sourcePort` (uncaptured: nothing redirects them). */
  function boundFactory(from: PodInfo, sourcePort: number, tcp: Socket[]): SocketFactory {
    return {
      listenTcp: () => Promise.reject(new Error("not used")),
      connectTcp: (o) => {
        const netns = NetnsHandle.open(from.netnsPath);
        try {
          const fd = createSocket(netns, { family: 4, type: "tcp", noDelay: true, bind: { address: from.ip, port: sourcePort } });
          const s = socketConnectFromFd(fd, o.host, o.port);
          tcp.push(s);
          return s;
        } finally {
          netns.close();
        }
      },
    };
  }

  /** One HBONE connection (its own pool) from `sourcePort` to the app in `dst`, once the app named itself. */
  async function tunnel(from: PodInfo, sourcePort: number, dst: PodInfo): Promise<{ pool: HbonePool; tcp: Socket[]; stream: HboneStream["stream"] }> {
    const tcp: Socket[] = [];
    const pool = new HbonePool({ certs });
    const conn = { pool, tcp };
    open.push(conn);
    const s = await pool.connect({
      sourcePodUid: `test-${from.name}`,
      sourceIdentity: id("default", `sa-${from.name}`),
      socketFactory: boundFactory(from, sourcePort, tcp),
      destinationIdentities: [id("default", `sa-${dst.name}`)],
      hboneAddress: { ip: dst.ip, port: HBONE_PORT },
      target: { ip: dst.ip, port: PORT },
      client: { ip: from.ip, port: sourcePort },
    });
    const name = await new Promise<string>((resolve) => {
      let got = "";
      const onData = (c: Buffer): void => {
        got += c.toString();
        if (!got.includes("\n")) return;
        s.stream.off("data", onData);
        resolve(got.trim());
      };
      s.stream.on("data", onData);
    });
    expect(name).toBe(dst.name);
    return { ...conn, stream: s.stream };
  }

  async function hboneWorkers(dst: PodInfo): Promise<number[]> {
    const conns = (await mesh.configDump(1)).workloadState[mesh.uid(dst)]?.connections ?? [];
    return conns.filter((c) => c.listener === "inbound-hbone").map((c) => c.worker).sort();
  }

  it("two connections the kernel would both give to worker 0 are served by workers 0 and 1, each relaying", async () => {
    const from = mesh.uncaptured.find((p) => p.node === 0);
    if (from === undefined) throw new Error("no uncaptured pod on node 0");
    const dst = mesh.topo.pod(1, 0);
    const ports: number[] = [];
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    for (let p = base; ports.length < 2 && p < base + 48; p++) {
      const probe = await tunnel(from, p, dst);
      const workers = await hboneWorkers(dst);
      expect(workers).toHaveLength(1);
      if (workers[0] === 0) ports.push(p);
      closeConnection(probe);
      open.splice(open.indexOf(probe), 1);
      await waitFor(async () => (await hboneWorkers(dst)).length === 0, 10_000, () => "probe connection still open");
    }
    expect(ports).toHaveLength(2);
    // One after another: the first is counted before the second is accepted.
    const tunnels = [];
    for (const p of ports) tunnels.push(await tunnel(from, p, dst));
    expect(await hboneWorkers(dst)).toEqual([0, 1]);
    for (const t of tunnels) t.stream.write("ping\n");
    const echoes = await Promise.all(tunnels.map((t) => new Promise<string>((resolve) => t.stream.once("data", (c: Buffer) => resolve(c.toString())))));
    expect(echoes).toEqual(["ping\n", "ping\n"]);
  }, 60_000);
});
