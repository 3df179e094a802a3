// The latency and connection-rate tool of the bench (runs as its own process inside a pod
// netns; no project imports, so it starts fast and measures only the socket path).
//   server <echoPort> <closePort>          echo every byte / answer one byte then close first
//   latency <host> <port> <roundTrips> <size> <warmup> [warmupSeconds]
//                                          counts the round trips after both warm-ups
//   connrate <host> <port> <seconds> <concurrency> [warmupSeconds]
//                                          counts what completes in the <seconds> after the warm-up
// Clients print one JSON line on stdout. Timestamps: process.hrtime.bigint().
import { createServer, connect, type Socket } from "node:net";

function us(from: bigint): number {
  return Number(process.hrtime.bigint() - from) / 1000;
}

function server(echoPort: number, closePort: number): void {
  const echo = createServer((s) => {
    s.setNoDelay(true);
    s.on("error", () => undefined);
    s.on("data", (d: Buffer) => s.write(d));
  });
  // Server-first close: the server side holds TIME_WAIT, the client's ports stay reusable.
  const closer = createServer((s) => {
    s.setNoDelay(true);
    s.on("error", () => undefined);
    s.once("data", () => s.end("k"));
  });
  let up = 0;
  const ready = (): void => {
    if (++up === 2) process.stdout.write("ready\n");
  };
  echo.listen(echoPort, "0.0.0.0", ready);
  closer.listen(closePort, "0.0.0.0", ready);
}

function open(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, noDelay: true });
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

// The warm-up is a count of round trips and, when given, a time as well: a freshly started
// ztunnel worker runs its per-message code unoptimized until V8 has compiled it, which takes
// thousands of round trips (a production ztunnel runs for days). Same warm-up for every path.
async function latency(host: string, port: number, roundTrips: number, size: number, warmup: number, warmupSeconds: number): Promise<void> {
  const s = await open(host, port);
  const msg = Buffer.alloc(size, 0x61);
  const samples: number[] = [];
  let got = 0;
  let wake: (() => void) | undefined;
  s.on("data", (d: Buffer) => {
    got += d.length;
    if (got >= size) {
      got -= size;
      wake?.();
    }
  });
  const failed = new Promise<never>((_, reject) => {
    s.once("error", reject);
    s.once("end", () => reject(new Error("peer closed during the latency run")));
  });
  failed.catch(() => undefined); // handled by the race; a late rejection must not crash the tool
  const roundTrip = (): Promise<void> => Promise.race([new Promise<void>((resolve) => ((wake = resolve), s.write(msg))), failed]);
  const warmEnd = process.hrtime.bigint() + BigInt(Math.round(warmupSeconds * 1e9));
  for (let i = 0; i < warmup; i++) await roundTrip();
  while (process.hrtime.bigint() < warmEnd) await roundTrip();
  for (let i = 0; i < roundTrips; i++) {
    const t = process.hrtime.bigint();
    await roundTrip();
    samples.push(us(t));
  }
  s.destroy();
  process.stdout.write(`${JSON.stringify({ kind: "latency", size, samplesUs: samples })}\n`);
}

function oneShort(host: string, port: number): Promise<number> {
  const t = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, noDelay: true });
    let answered = false;
    s.once("connect", () => s.write("x"));
    s.on("data", () => (answered = true));
    s.once("error", reject);
    s.once("close", () => (answered ? resolve(us(t)) : reject(new Error("closed before the answer"))));
  });
}

// The loops run through the warm-up as well (a proxy's per-connection code is still being
// compiled then: a fresh ztunnel needs a few seconds of connections to reach its steady rate,
// as iperf's omitted first second and the latency row's warm-up round trips allow for); only
// connections that complete after it are counted.
async function connrate(host: string, port: number, seconds: number, concurrency: number, warmupSeconds: number): Promise<void> {
  const start = process.hrtime.bigint();
  const t0 = start + BigInt(Math.round(warmupSeconds * 1e9));
  const deadline = t0 + BigInt(Math.round(seconds * 1e9));
  let ok = 0;
  let errors = 0;
  let lastError = "";
  const samples: number[] = [];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (process.hrtime.bigint() < deadline) {
        try {
          const u = await oneShort(host, port);
          if (process.hrtime.bigint() < t0) continue;
          ok++;
          if (samples.length < 200_000) samples.push(u);
        } catch (err) {
          errors++;
          lastError = String(err);
          if (errors > 1000 && errors > ok) return; // the path is broken, stop hammering it
        }
      }
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(`${JSON.stringify({ kind: "connrate", connections: ok, errors, lastError, seconds: elapsed, concurrency, samplesUs: samples })}\n`);
}

const [mode, ...args] = process.argv.slice(2);
const n = (i: number): number => {
  const v = Number(args[i]);
  if (!Number.isFinite(v)) throw new Error(`argument ${i + 2} must be a number, got "${args[i]}"`);
  return v;
};
switch (mode) {
  case "server":
    server(n(0), n(1));
    break;
  case "latency":
    await latency(args[0]!, n(1), n(2), n(3), n(4), args[5] === undefined ? 0 : n(5));
    break;
  case "connrate":
    await connrate(args[0]!, n(1), n(2), n(3), args[4] === undefined ? 0 : n(4));
    break;
  default:
    process.stderr.write("usage: pingpong-tool server <echoPort> <closePort> | latency <host> <port> <n> <size> <warmup> [warmup s] | connrate <host> <port> <s> <c> [warmup s]\n");
    process.exit(2);
}
