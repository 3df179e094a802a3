// HBONE data-path cost on loopback, in one process (client ztunnel, server ztunnel and both
// apps share one event loop, so absolute numbers are pessimistic; the ratios to raw TCP
// measured in the same run are what to compare between branches). Not a test.
//   npm run build && node dist/bench/hbone-loopback.js [MiB per stream] [round trips]
import type { Socket } from "node:net";
import { dial, HboneEnv } from "../test/fixtures/ztunnel-hbone-env.js";

const MiB = 1024 * 1024;
const SIZE = Number(process.argv[2] ?? 256) * MiB;
const ROUND_TRIPS = Number(process.argv[3] ?? 2000);

/** Sends SIZE bytes on each of `streams` connections to a sink; returns MiB/s overall. */
async function throughput(port: number, streams: number): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: streams }, async () => {
      const s = await dial(port);
      const closed = new Promise((r) => s.once("close", r));
      s.resume();
      for (let sent = 0; sent < SIZE; sent += chunk.length) {
        if (!s.write(chunk)) await new Promise((r) => s.once("drain", r));
      }
      s.end();
      await closed;
    }),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return (SIZE * streams) / MiB / secs;
}

/** 1 KiB ping-pong; returns the mean round trip in microseconds. */
async function pingPong(port: number): Promise<number> {
  const s = await dial(port);
  const msg = Buffer.alloc(1024, 0x62);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ROUND_TRIPS; i++) {
    await new Promise<void>((resolve) => {
      let got = 0;
      const onData = (c: Buffer): void => {
        got += c.length;
        if (got >= msg.length) {
          s.off("data", onData);
          resolve();
        }
      };
      s.on("data", onData);
      s.write(msg);
    });
  }
  const us = Number(process.hrtime.bigint() - t0) / 1e3 / ROUND_TRIPS;
  s.destroy();
  return us;
}

async function main(): Promise<void> {
  const env = await HboneEnv.create();
  try {
    // The sink reads everything and closes after the writer's FIN; the echo app answers pings.
    const sink = await env.app((s: Socket) => {
      s.resume();
      s.once("end", () => s.end());
    });
    const echo = await env.app((s: Socket) => s.pipe(s));
    const hboneSink = await env.outbound({ ip: "127.0.0.1", port: sink.port });
    const hboneEcho = await env.outbound({ ip: "127.0.0.1", port: echo.port });

    const rows: Array<[string, number, number, string]> = [];
    for (const streams of [1, 4]) {
      const raw = await throughput(sink.port, streams);
      const hb = await throughput(hboneSink, streams);
      rows.push([`throughput ${streams} stream(s), MiB/s`, raw, hb, (hb / raw).toFixed(3)]);
    }
    const rawRtt = await pingPong(echo.port);
    const hbRtt = await pingPong(hboneEcho);
    rows.push(["1 KiB ping-pong, µs/round trip", rawRtt, hbRtt, (hbRtt / rawRtt).toFixed(3)]);

    console.log(`HBONE vs raw TCP on loopback (${SIZE / MiB} MiB per stream, ${ROUND_TRIPS} round trips)`);
    console.log(["metric".padEnd(34), "raw TCP".padStart(10), "HBONE".padStart(10), "ratio".padStart(8)].join(" "));
    for (const [name, raw, hb, ratio] of rows) {
      console.log([name.padEnd(34), raw.toFixed(1).padStart(10), hb.toFixed(1).padStart(10), ratio.padStart(8)].join(" "));
    }
  } finally {
    await env.close();
  }
}

await main();
