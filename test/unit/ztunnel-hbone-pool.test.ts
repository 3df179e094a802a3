import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { HbonePool, type HboneStream } from "../../src/ztunnel/proxy/hbone-client.js";
import { CLIENT_ID, closeServer, HboneEnv, listen } from "../fixtures/ztunnel-hbone-env.js";
import { LoopbackSocketFactory } from "../fixtures/ztunnel-loopback-factory.js";

// Echo app; every test opens CONNECT streams straight from the pool.
async function echoEnv(opts: Parameters<typeof HboneEnv.create>[0] = {}): Promise<{ env: HboneEnv; target: { ip: string; port: number } }> {
  const env = await HboneEnv.create(opts);
  const app = await env.app((s) => s.pipe(s));
  return { env, target: { ip: "127.0.0.1", port: app.port } };
}

function roundTrip(stream: HboneStream["stream"], text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    stream.once("data", (d: Buffer) => resolve(d.toString()));
    stream.once("error", reject);
    stream.write(text);
  });
}

/** A stream used once and finished: one round trip, then end, resolved once it closed. */
async function usedStream(env: HboneEnv, target: { ip: string; port: number }, text: string): Promise<HboneStream> {
  const s = await env.pool.connect(env.request(target));
  await roundTrip(s.stream, text);
  s.stream.end();
  await new Promise((r) => s.stream.once("close", r));
  return s;
}

function connectionsOf(pool: HbonePool): Array<{ id: number; streams: number; state: string }> {
  return [...pool.stats().values()].flat();
}

describe("HBONE connection pool", () => {
  let env: HboneEnv;
  afterEach(async () => {
    await env.close();
  });

  it("the 4th concurrent stream opens a second connection when the cap is 3", async () => {
    const e = await echoEnv({ pool: { maxStreamsPerConnection: 3 } });
    env = e.env;
    const streams = await Promise.all([1, 2, 3, 4].map(() => env.pool.connect(env.request(e.target))));
    const ids = streams.map((s) => s.connectionId);
    expect(new Set(ids.slice(0, 3)).size).toBe(1);
    expect(ids[3]).not.toBe(ids[0]);
    expect(connectionsOf(env.pool).map((c) => c.streams).sort()).toEqual([1, 3]);
    expect(env.server.stats.connections).toBe(2);
    // Every stream really carries bytes.
    expect(await Promise.all(streams.map((s, i) => roundTrip(s.stream, `s${i}`)))).toEqual(["s0", "s1", "s2", "s3"]);
    for (const s of streams) s.stream.close();
  });

  it("respects the server's SETTINGS_MAX_CONCURRENT_STREAMS when it is below our cap", async () => {
    const e = await echoEnv({ server: { maxConcurrentStreams: 2 } });
    env = e.env;
    // All five are requested before the first connection is up.
    const streams = await Promise.all([1, 2, 3, 4, 5].map(() => env.pool.connect(env.request(e.target))));
    const perConn = new Map<number, number>();
    for (const s of streams) perConn.set(s.connectionId, (perConn.get(s.connectionId) ?? 0) + 1);
    expect(Math.max(...perConn.values())).toBeLessThanOrEqual(2);
    expect(await Promise.all(streams.map((s, i) => roundTrip(s.stream, `m${i}`)))).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    for (const s of streams) s.stream.close();
  });

  it("with the default cap of 100, the 101st concurrent stream opens a second connection", async () => {
    const e = await echoEnv();
    env = e.env;
    const streams = await Promise.all(Array.from({ length: 101 }, () => env.pool.connect(env.request(e.target))));
    const byConn = new Map<number, number>();
    for (const s of streams) byConn.set(s.connectionId, (byConn.get(s.connectionId) ?? 0) + 1);
    expect([...byConn.values()].sort((a, b) => a - b)).toEqual([1, 100]);
    for (const s of streams) s.stream.close();
  });

  it("a finished stream frees its slot for reuse", async () => {
    const e = await echoEnv({ pool: { maxStreamsPerConnection: 1 } });
    env = e.env;
    const first = await usedStream(env, e.target, "a");
    const second = await env.pool.connect(env.request(e.target));
    expect(second.connectionId).toBe(first.connectionId);
    second.stream.close();
  });

  it("two source pods with the same identity never share a connection", async () => {
    const e = await echoEnv();
    env = e.env;
    const podB = new LoopbackSocketFactory("127.0.0.6");
    env.closers.push(() => podB.close());
    const a = await env.pool.connect(env.request(e.target, { sourcePodUid: "pod-a" }));
    const b = await env.pool.connect(env.request(e.target, { sourcePodUid: "pod-b", socketFactory: podB }));
    const a2 = await env.pool.connect(env.request(e.target, { sourcePodUid: "pod-a" }));
    expect(b.connectionId).not.toBe(a.connectionId);
    expect(a2.connectionId).toBe(a.connectionId);
    expect(env.pool.stats().size).toBe(2);
    expect(HbonePool.key(env.request(e.target, { sourcePodUid: "pod-a" }))).not.toBe(HbonePool.key(env.request(e.target, { sourcePodUid: "pod-b" })));
    // Destination identity order does not split the pool.
    const id2 = { ...CLIENT_ID, serviceAccount: "other" };
    expect(HbonePool.key(env.request(e.target, { destinationIdentities: [CLIENT_ID, id2] }))).toBe(
      HbonePool.key(env.request(e.target, { destinationIdentities: [id2, CLIENT_ID] })),
    );
    for (const s of [a, b, a2]) s.stream.close();
  });

  it("closes a connection left unused for the release timeout", async () => {
    const e = await echoEnv({ pool: { idleTimeoutMs: 150 } });
    env = e.env;
    await usedStream(env, e.target, "x");
    expect(connectionsOf(env.pool)).toHaveLength(1);
    await waitFor(() => connectionsOf(env.pool).length === 0 && env.server.stats.connections === 0);
  });

  it("after GOAWAY no new stream uses the connection, while open streams finish", async () => {
    const e = await echoEnv();
    env = e.env;
    const s = await env.pool.connect(env.request(e.target));
    await roundTrip(s.stream, "before");
    await Promise.race([env.server.drain(), new Promise((r) => setTimeout(r, 100))]);
    await waitFor(() => connectionsOf(env.pool).every((c) => c.state !== "ready"));
    expect(await roundTrip(s.stream, "after goaway")).toBe("after goaway");
    // The listener is gone too, so a new stream cannot reuse anything: it fails.
    await expect(env.pool.connect(env.request(e.target))).rejects.toMatchObject({ code: "HBONE_HANDSHAKE_FAILED" });
    s.stream.end();
    await waitFor(() => connectionsOf(env.pool).length === 0);
  });
});

describe("HBONE keepalive", () => {
  let env: HboneEnv;
  afterEach(async () => {
    await env.close();
  });

  it("a peer that stops answering PINGs is dropped after the PING timeout", async () => {
    const e = await echoEnv({ pool: { pingIntervalMs: 50, pingTimeoutMs: 150 } });
    env = e.env;
    // A TCP proxy in the path that can freeze (black-hole) the connection.
    let frozen = false;
    let fromPeer = 0; // chunks the HBONE server sent back (PING ACKs once idle)
    const proxy = createServer((down: Socket) => {
      const up = connect({ host: "127.0.0.1", port: env.hbonePort });
      down.on("data", (c: Buffer) => frozen || up.write(c));
      up.on("data", (c: Buffer) => frozen || (fromPeer++, down.write(c)));
      for (const [a, b] of [[down, up], [up, down]] as const) {
        a.on("error", () => b.destroy());
        a.on("close", () => b.destroy());
      }
    });
    await listen(proxy);
    env.closers.push(() => closeServer(proxy));
    const s = await env.pool.connect(env.request(e.target, { hboneAddress: { ip: "127.0.0.1", port: (proxy.address() as AddressInfo).port } }));
    expect(await roundTrip(s.stream, "alive")).toBe("alive");
    // PINGs keep flowing while the path works: several answered PINGs (each past the timeout
    // of the one before) and the connection stays.
    const answered = fromPeer;
    await waitFor(() => fromPeer >= answered + 4, 3000);
    expect(connectionsOf(env.pool)).toHaveLength(1);
    frozen = true;
    // Frozen: no more answers, so the PING timeout drops it (it would stay forever otherwise).
    await waitFor(() => connectionsOf(env.pool).length === 0, 3000);
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}
