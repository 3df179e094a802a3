import { readSync } from "node:fs";
import { forwardLogs } from "./agent-client.js";
import { createPluginLog } from "./log.js";
import { runPlugin } from "./plugin.js";
import { writeOut } from "./stdio.js";

// Process entry of the ambient CNI plugin executable. stdout carries only the result or the
// CNI error object; logs go to stderr (and to the agent's log socket when it listens).

// The runtime hands us a blocking pipe: reading it synchronously to EOF skips building a stream
// (and its modules) on every invocation. Should stdin be non-blocking and not yet filled
// (EAGAIN), what was read so far is kept and the rest comes through the stream.
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EINTR") continue;
      if (code !== "EAGAIN") throw err;
      for await (const c of process.stdin) chunks.push(c as Buffer);
      break;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function main(): Promise<void> {
  const log = createPluginLog((line) => writeOut(2, line), {
    command: process.env.CNI_COMMAND ?? "",
    containerId: process.env.CNI_CONTAINERID ?? "",
  });
  const outcome = await runPlugin(process.env, readStdin, log);
  writeOut(1, outcome.stdout);
  if (outcome.runDir !== undefined) await forwardLogs(outcome.runDir, log.lines());
  process.exitCode = outcome.exitCode;
}

void main();
