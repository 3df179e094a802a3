import { readFileSync } from "node:fs";
import { forwardLogs } from "./agent-client.js";
import { createPluginLog } from "./log.js";
import { runPlugin } from "./plugin.js";

// Process entry of the ambient CNI plugin executable. stdout carries only the result or the
// CNI error object; logs go to stderr (and to the agent's log socket when it listens).

async function readStdinStream(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

// The runtime hands us a blocking pipe: one synchronous read to EOF skips building a stream
// (and loading its modules) on every invocation. A non-blocking stdin takes the stream path.
async function readStdin(): Promise<string> {
  try {
    return readFileSync(0, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EAGAIN") return await readStdinStream();
    throw err;
  }
}

async function main(): Promise<void> {
  const log = createPluginLog((line) => process.stderr.write(line), {
    command: process.env.CNI_COMMAND ?? "",
    containerId: process.env.CNI_CONTAINERID ?? "",
  });
  const outcome = await runPlugin(process.env, readStdin, log);
  process.stdout.write(outcome.stdout);
  if (outcome.runDir !== undefined) await forwardLogs(outcome.runDir, log.lines());
  process.exitCode = outcome.exitCode;
}

void main();
