import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { STREAM_WINDOW } from "../../src/ztunnel/proxy/h2-options.js";
import { dial, HboneEnv, payload, useHboneEnvs } from "../fixtures/ztunnel-hbone-env.js";

const MiB = 1024 * 1024;

describe("HBONE backpressure", () => {
  const newEnv = useHboneEnvs();
  let env: HboneEnv;

  it("a reader that stops keeps our buffers within a stream window, and everything arrives once it reads again", async () => {
    env = await newEnv();
    let appSocket: Socket | undefined;
    const appHash = createHash("sha256");
    let appBytes = 0;
    const app = await env.app((s) => {
      appSocket = s;
      s.pause(); // a stalled reader
      s.on("data", (c: Buffer) => {
        appHash.update(c);
        appBytes += c.length;
      });
    });
    const port = await env.outbound({ ip: "127.0.0.1", port: app.port });
    const client = await dial(port);

    const total = 128 * MiB;
    const chunk = payload(MiB, 7);
    const sentHash = createHash("sha256");
    let written = 0;
    let lastProgress = Date.now();
    const writer = (async () => {
      while (written < total) {
        sentHash.update(chunk);
        written += chunk.length;
        lastProgress = Date.now();
        if (!client.write(chunk)) await new Promise((r) => client.once("drain", r));
      }
      client.end();
    })();

    // Sample our own buffering while the writer pushes against the stalled reader.
    let maxBuffered = 0;
    const sample = (): void => {
      const mine = env.relays.reduce((n, r) => n + r.buffered(), 0) + env.server.bufferedBytes();
      maxBuffered = Math.max(maxBuffered, mine);
    };
    const sampler = setInterval(sample, 5);
    await waitFor(() => Date.now() - lastProgress > 500, 20_000);
    sample();
    const stalledAt = written;
    // The stall happened well before the end: the pressure reached the writer.
    expect(stalledAt).toBeLessThan(total);
    expect(maxBuffered).toBeGreaterThan(0);
    expect(maxBuffered).toBeLessThan(STREAM_WINDOW + MiB);

    // The reader resumes: every byte arrives, in order.
    appSocket?.resume();
    await writer;
    await waitFor(() => appBytes === total, 30_000);
    clearInterval(sampler);
    expect(appHash.digest("hex")).toBe(sentHash.digest("hex"));
    expect(maxBuffered).toBeLessThan(STREAM_WINDOW + MiB);
  }, 60_000);
});

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
}
