import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** A non-TS file of test/harness, also when this module runs compiled from dist/test/harness. */
function harnessFile(name: string): string {
  const here = fileURLToPath(new URL(`./${name}`, import.meta.url));
  return existsSync(here) ? here : fileURLToPath(new URL(`../../../test/harness/${name}`, import.meta.url));
}

/** Path of the tag-server listener script (plain JS, runs without a build). */
export const TAG_SERVER = harnessFile("tag-server.mjs");
/** Path of the python TCP client (SO_MARK, source bind); run with /usr/bin/python3. */
export const TCP_CLIENT = harnessFile("tcp-client.py");
/** Path of the python listener answering with SO_ORIGINAL_DST; run with /usr/bin/python3. */
export const ORIGDST_SERVER = harnessFile("origdst-server.py");
export const SYSTEM_PYTHON = "/usr/bin/python3";

/**
 * Resolves once a child prints a line equal to `line` on stdout; rejects when it exits first or
 * the timeout passes (with its stderr, so a failed listener explains itself).
 */
export async function waitForLine(child: ChildProcess, line: string, timeoutMs = 10_000): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => finish(new Error(`no "${line}" from child within ${timeoutMs} ms; stderr: ${err.trim()}`)), timeoutMs);
    const onOut = (d: Buffer): void => {
      out += d.toString();
      if (out.split("\n").includes(line)) finish();
    };
    const onErr = (d: Buffer): void => {
      err += d.toString();
    };
    const onExit = (code: number | null, signal: string | null): void =>
      finish(new Error(`child exited (${code ?? signal}) before printing "${line}"; stderr: ${err.trim()}`));
    function finish(e?: Error): void {
      clearTimeout(timer);
      child.stdout?.off("data", onOut);
      child.stderr?.off("data", onErr);
      child.off("exit", onExit);
      if (e) reject(e);
      else resolve();
    }
    child.stdout?.on("data", onOut);
    child.stderr?.on("data", onErr);
    child.once("exit", onExit);
  });
}
