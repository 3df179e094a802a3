import { afterEach, expect, it } from "vitest";
import { FakeWaypoint } from "../harness/fake-istiod/waypoint.js";
import { waitUntil } from "../harness/wait.js";
import { LoopbackSocketFactory } from "../fixtures/ztunnel-loopback-factory.js";
import { dial, HboneEnv, readAll } from "../fixtures/ztunnel-hbone-env.js";
import { certFor, id } from "../fixtures/ztunnel-pki.js";

// A client that sends its request and FIN before its tunnel is up (here: a waypoint in the
// path, so the 200 comes late). The paused client socket emits 'end' before the relay exists;
// the FIN must still travel as END_STREAM, or the far side waits for it forever.

let env: HboneEnv | undefined;
let wp: FakeWaypoint | undefined;
afterEach(async () => {
  wp?.close();
  await env?.close();
});

it("a client that half-closes while its tunnel is being set up still gets its answer, and both ends complete", async () => {
  const records: Array<{ status: number; end: string | undefined }> = [];
  env = await HboneEnv.create({ server: { onRecord: (r) => records.push({ status: r.status, end: r.result?.end }) } });
  const app = await env.app((s) => {
    s.resume();
    s.once("end", () => s.end("answer after your FIN\n"));
  });
  const wpId = id("default", "waypoint");
  const c = await certFor(wpId);
  const hbonePort = env.hbonePort;
  wp = await FakeWaypoint.start(new LoopbackSocketFactory(), 0, { certPem: c.certPem, keyPem: c.keyPem, rootPem: c.rootPem }, (authority) => ({ host: "127.0.0.1", port: hbonePort, authority }));
  const port = await env.outbound({ ip: "127.0.0.1", port: app.port }, { hboneAddress: { ip: "127.0.0.1", port: wp.port }, destinationIdentities: [wpId] });
  const sock = await dial(port);
  const got = readAll(sock);
  sock.end();
  expect((await got).toString()).toBe("answer after your FIN\n");
  const e = env;
  await waitUntil(() => records.length === 1 && e.results.length === 1, "one record from each end of the tunnel");
  expect(records[0]).toEqual({ status: 200, end: "complete" });
  const r = e.results[0];
  expect(r?.ok && r.result.end).toBe("complete");
});
