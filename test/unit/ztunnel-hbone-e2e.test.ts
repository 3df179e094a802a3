import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { dial, HboneEnv, payload, readAll, sha, writeAll, useHboneEnvs } from "../fixtures/ztunnel-hbone-env.js";

const MiB = 1024 * 1024;

describe("HBONE end to end on loopback", () => {
  const newEnv = useHboneEnvs();
  let env: HboneEnv;

  it("echoes 8 MiB each way, client half-closes first, and the app sees the client pod's IP", async () => {
    env = await newEnv({ clientSource: "127.0.0.5" });
    const seen: string[] = [];
    // Echo app: copies everything back and ends after the client's FIN.
    const app = await env.app((s) => {
      seen.push(s.remoteAddress ?? "");
      s.pipe(s);
    });
    const port = await env.outbound({ ip: "127.0.0.1", port: app.port });
    const client = await dial(port);
    const data = payload(8 * MiB, 1);
    const received = readAll(client);
    await writeAll(client, data);
    client.end();
    const echoed = await received;
    expect(echoed.length).toBe(data.length);
    expect(sha(echoed)).toBe(sha(data));
    expect(seen).toEqual(["127.0.0.5"]);
    // Both the HBONE transport and the app connection carry TCP keepalive and no Nagle (and
    // both connections went through the factories, or the loop below would check nothing).
    expect(env.clientFactory.connectCalls.length).toBeGreaterThan(0);
    expect(env.serverFactory.connectCalls.length).toBeGreaterThan(0);
    for (const call of [...env.clientFactory.connectCalls, ...env.serverFactory.connectCalls]) {
      expect(call).toMatchObject({ noDelay: true, keepAlive: { idleSec: 180, intervalSec: 180, count: 9 } });
    }
    expect(env.serverFactory.connectCalls[0]?.sourceAddress).toBe("127.0.0.5");
    await waitFor(() => env.results.length === 1);
    const r = env.results[0];
    expect(r?.ok).toBe(true);
    if (r?.ok) {
      expect(r.result.end).toBe("complete");
      expect(r.result.bytesAtoB).toBe(8 * MiB);
      expect(r.result.bytesBtoA).toBe(8 * MiB);
    }
  });

  it("server half-closes first: the app's FIN reaches the client while the client keeps sending", async () => {
    env = await newEnv();
    const fromApp = payload(8 * MiB, 2);
    const fromClient = payload(8 * MiB, 3);
    let appGot: Promise<Buffer> = Promise.resolve(Buffer.alloc(0));
    const app = await env.app((s: Socket) => {
      appGot = readAll(s);
      void writeAll(s, fromApp).then(() => s.end());
    });
    const port = await env.outbound({ ip: "127.0.0.1", port: app.port });
    const client = await dial(port);
    // Receive the app's whole stream and its FIN before sending anything.
    const got = await readAll(client);
    expect(sha(got)).toBe(sha(fromApp));
    expect(client.writable).toBe(true);
    await writeAll(client, fromClient);
    client.end();
    const appReceived = await waitForValue(() => appGot);
    expect(appReceived.length).toBe(fromClient.length);
    expect(sha(appReceived)).toBe(sha(fromClient));
    await waitFor(() => env.results.length === 1);
    expect(env.results[0]?.ok && env.results[0].result.end).toBe("complete");
  });

  it("passes a reset from the app through as a reset, not a clean end", async () => {
    env = await newEnv();
    const app = await env.app((s) => {
      s.once("data", () => s.resetAndDestroy());
    });
    const port = await env.outbound({ ip: "127.0.0.1", port: app.port });
    const client = await dial(port);
    const outcome = new Promise<string>((resolve) => {
      client.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      client.once("end", () => resolve("end"));
    });
    client.write("hello");
    expect(await outcome).toBe("ECONNRESET");
  });
});

describe("HBONE idle timeout", () => {
  const newEnv = useHboneEnvs();
  let env: HboneEnv;

  it("an idle tunnel is closed cleanly on both ends (FIN, not reset)", async () => {
    env = await newEnv({ server: { relay: { idleTimeoutMs: 200 } } });
    const ended = (s: Socket): Promise<string> =>
      new Promise((resolve) => {
        s.once("end", () => resolve("end"));
        s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      });
    let appSaw: Promise<string> = Promise.resolve("no connection");
    const app = await env.app((s) => {
      appSaw = ended(s);
      s.pipe(s);
    });
    const port = await env.outbound({ ip: "127.0.0.1", port: app.port });
    const client = await dial(port);
    const clientSaw = ended(client);
    client.resume();
    client.write("x");
    expect(await clientSaw).toBe("end");
    expect(await appSaw).toBe("end");
    await waitFor(() => env.results.length === 1);
    expect(env.results[0]?.ok && env.results[0].result.end).toBe("complete");
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function waitForValue<T>(get: () => Promise<T>): Promise<T> {
  await new Promise((r) => setTimeout(r, 0));
  return get();
}
