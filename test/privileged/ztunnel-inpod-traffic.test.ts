import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";
import { Mesh, readAll, waitFor, writeAll } from "../fixtures/ztunnel-e2e-cluster.js";

// ztunnel end to end in real netns: 2 nodes × 2 captured pods, one ztunnel process per node
// (2 worker threads each), the test as the node agent. Traffic between captured pods crosses
// as HBONE; captured ↔ uncaptured is passthrough / inbound plaintext.

const MiB = 1024 * 1024;
const APP_PORT = 8080;

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
  let mesh: Mesh;
  let a0: PodInfo; // node 0
  let a1: PodInfo; // node 0
  let b0: PodInfo; // node 1
  let plain: PodInfo; // node 1, not captured
  /** Remote address seen by the app of each pod, per connection. */
  const seen = new Map<string, string[]>();

  beforeAll(async () => {
    mesh = await Mesh.create({ uncaptured: 1 });
    a0 = mesh.topo.pod(0, 0);
    a1 = mesh.topo.pod(0, 1);
    b0 = mesh.topo.pod(1, 0);
    plain = mesh.uncaptured[0]!;
    for (const pod of [...mesh.captured, plain]) {
      seen.set(pod.name, []);
      // Echo app that reports who connected: echoes until the client's FIN, then ends.
      await mesh.app(pod, APP_PORT, (s) => {
        seen.get(pod.name)!.push(s.remoteAddress ?? "");
        s.pipe(s);
      });
    }
    await Promise.all([mesh.startZtunnel(0), mesh.startZtunnel(1)]);
  });

  afterAll(async () => {
    await mesh?.destroy();
  });

  async function echo(from: PodInfo, to: PodInfo, size: number): Promise<Buffer> {
    const c = await mesh.dial(from, to.ip, APP_PORT);
    const data = payload(size, size);
    const got = readAll(c);
    await writeAll(c, data);
    c.end();
    const back = await got;
    expect(back.length).toBe(size);
    expect(sha(back)).toBe(sha(data));
    return back;
  }

  it("captured → captured across nodes: echo works and the app sees the client pod's IP", async () => {
    seen.get(b0.name)!.length = 0;
    await echo(a0, b0, 64 * 1024);
    expect(seen.get(b0.name)).toEqual([a0.ip]);
  });

  it("captured → captured on the same node", async () => {
    seen.get(a1.name)!.length = 0;
    await echo(a0, a1, 64 * 1024);
    expect(seen.get(a1.name)).toEqual([a0.ip]);
  });
});
