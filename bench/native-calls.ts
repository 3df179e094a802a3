// Cost of the native layer's calls (not a test). Needs root.
// Run: npm run bench:native [-- --out <dir>]; with --out the same lines also go to
// <dir>/native-calls-<time>.md with the machine and code revision (a file to commit behind a claim).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describeMachine, describeRevision } from "./lib/machine.js";
import { native } from "../src/native/binding.js";
import { closeFd, createSocket, getSocketMark, NetnsHandle, SeqpacketServer, SeqpacketSocket } from "../src/native/index.js";

const lines: string[] = [];

function say(line: string): void {
  lines.push(line);
  console.log(line);
}

function perCall(label: string, iterations: number, fn: (n: number) => void): number {
  fn(Math.min(1000, iterations)); // warm-up
  const t0 = process.hrtime.bigint();
  fn(iterations);
  const ns = Number(process.hrtime.bigint() - t0) / iterations;
  say(`${label.padEnd(52)} ${(ns / 1000).toFixed(3).padStart(9)} µs/op  (${iterations} ops)`);
  return ns;
}

async function scmRights(netns: NetnsHandle, iterations: number): Promise<void> {
  const name = `ambient-bench-${randomBytes(3).toString("hex")}`;
  const server = SeqpacketServer.listen({ abstract: name });
  const accepted = new Promise<SeqpacketSocket>((resolve) => server.once("connection", resolve));
  const client = await SeqpacketSocket.connect({ abstract: name });
  const peer = await accepted;
  const payload = Buffer.from("netns");

  // Ping-pong: send one fd, wait until the receiver has it (includes the event-loop wake-up).
  const oneWay = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const got = new Promise<number | undefined>((resolve) => peer.once("message", (_d: Buffer, fd?: number) => resolve(fd)));
      await client.send(payload, netns.fd);
      const fd = await got;
      if (fd !== undefined) closeFd(fd);
    }
  };
  await oneWay(200);
  let t0 = process.hrtime.bigint();
  await oneWay(iterations);
  let ns = Number(process.hrtime.bigint() - t0) / iterations;
  say(`${"one fd over SCM_RIGHTS, send -> 'message' (sequential)".padEnd(52)} ${(ns / 1000).toFixed(3).padStart(9)} µs/op  (${iterations} ops)`);

  // Pipelined: many in flight, cost per datagram.
  let received = 0;
  const all = new Promise<void>((resolve) => {
    peer.on("message", (_d: Buffer, fd?: number) => {
      if (fd !== undefined) closeFd(fd);
      if (++received === iterations) resolve();
    });
  });
  t0 = process.hrtime.bigint();
  const sends: Array<Promise<void>> = [];
  for (let i = 0; i < iterations; i++) sends.push(client.send(payload, netns.fd));
  await Promise.all(sends);
  await all;
  ns = Number(process.hrtime.bigint() - t0) / iterations;
  say(`${"one fd over SCM_RIGHTS (pipelined)".padEnd(52)} ${(ns / 1000).toFixed(3).padStart(9)} µs/op  (${iterations} ops)`);
  client.close();
  peer.close();
  server.close();
}

async function main(): Promise<void> {
  const ns = `bench-${randomBytes(3).toString("hex")}`;
  execFileSync("ip", ["netns", "add", ns]);
  const netns = NetnsHandle.open(`/var/run/netns/${ns}`);
  try {
    say(`node ${process.version}, ${process.arch}`);
    // A call that makes no syscall: uv_ref on a poll handle.
    const server = SeqpacketServer.listen({ abstract: `ambient-bench-${randomBytes(3).toString("hex")}` });
    perCall("N-API call without a syscall: SeqpacketServer#ref()", 1_000_000, (n) => {
      for (let i = 0; i < n; i++) server.ref();
    });
    server.close();
    const probe = createSocket(null, { family: 4, type: "tcp" });
    perCall("N-API call + getsockopt: getSocketMark(fd)", 1_000_000, (n) => {
      for (let i = 0; i < n; i++) getSocketMark(probe);
    });
    closeFd(probe);
    perCall("setns in + out (in C, loop inside one call)", 200_000, (n) => native.benchSetnsRoundTrip(netns.fd, n));
    perCall("setns in + out (one JS call each)", 100_000, (n) => {
      for (let i = 0; i < n; i++) native.benchSetnsRoundTrip(netns.fd, 1);
    });
    perCall("createSocket in netns (setns+socket+setns) + close", 100_000, (n) => {
      for (let i = 0; i < n; i++) closeFd(createSocket(netns, { family: 4, type: "tcp" }));
    });
    perCall("createSocket in current netns + close", 100_000, (n) => {
      for (let i = 0; i < n; i++) closeFd(createSocket(null, { family: 4, type: "tcp" }));
    });
    perCall("listener in netns: mark+reuseport+bind+listen + close", 20_000, (n) => {
      for (let i = 0; i < n; i++) {
        const fd = createSocket(netns, {
          family: 4,
          type: "tcp",
          mark: 0x539,
          reusePort: true,
          bind: { address: "127.0.0.1", port: 0 },
          listen: { backlog: 128 },
        });
        closeFd(fd);
      }
    });
    await scmRights(netns, 20_000);
  } finally {
    netns.close();
    execFileSync("ip", ["netns", "del", ns]);
  }
}

function outDir(argv: readonly string[]): string | undefined {
  if (argv.length === 0) return undefined;
  if (argv.length === 2 && argv[0] === "--out" && argv[1] !== "") return argv[1];
  throw new Error("usage: node dist/bench/native-calls.js [--out <dir>]");
}

async function record(dir: string, started: Date, machine: Awaited<ReturnType<typeof describeMachine>>): Promise<void> {
  const revision = await describeRevision(join(import.meta.dirname, "..", ".."));
  const stamp = started.toISOString().replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
  const file = join(dir, `native-calls-${stamp}.md`);
  await mkdir(dir, { recursive: true });
  const text = [
    `# N-API call costs ${started.toISOString()}`,
    "",
    `Command: \`npm run bench:native -- --out <dir>\` (bench/native-calls.ts), code at ${revision}. Machine: ${machine.cpuModel}, ${machine.cores} cores, kernel ${machine.kernel}, Node ${machine.node}; load average at start ${machine.loadAvgStart.map((x) => x.toFixed(2)).join(" / ")} (other work on the machine shifts these numbers).`,
    "",
    "```",
    ...lines,
    "```",
    "",
  ].join("\n");
  await writeFile(file, text);
  console.error(`written to ${file}`);
}

let dir: string | undefined;
try {
  dir = outDir(process.argv.slice(2));
} catch (err) {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(2);
}
const started = new Date();
const machine = await describeMachine();
await main();
if (dir !== undefined) await record(dir, started, machine);
