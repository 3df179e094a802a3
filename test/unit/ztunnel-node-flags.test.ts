import { execFile } from "node:child_process";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { missingNodeFlags, ZTUNNEL_NODE_FLAGS, ztunnelNodeArgv, ztunnelShebang } from "../../src/ztunnel/node-flags.js";
import { repoRoot } from "../fixtures/native-build.js";
import { tempDir } from "../fixtures/ztunnel-pki.js";

// The image runs ztunnel through main.js's shebang; tests, bench and demo spawn node with
// ztunnelNodeArgv. Both must carry the same flags, and the shebang must really reach node.

const run = promisify(execFile);

describe("ztunnel's node flags", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  it("are the ones main.ts's shebang gives node", async () => {
    const main = await readFile(join(repoRoot, "src", "ztunnel", "main.ts"), "utf8");
    expect(main.split("\n")[0]).toBe(ztunnelShebang());
    expect(ztunnelShebang()).toBe(`#!/usr/bin/env -S node ${ZTUNNEL_NODE_FLAGS.join(" ")}`);
  });

  it("reach node when a script with that shebang is executed directly, as the image runs ztunnel", async () => {
    const dir = await tempDir("node-flags");
    cleanups.push(dir.cleanup);
    const script = join(dir.path, "argv.mjs");
    await writeFile(script, `${ztunnelShebang()}\nprocess.stdout.write(JSON.stringify(process.execArgv));\n`);
    await chmod(script, 0o755);
    // env finds node on PATH, as in the image; put this test's node first.
    const path = `${join(process.execPath, "..")}:${process.env.PATH ?? ""}`;
    const { stdout } = await run(script, [], { env: { PATH: path } });
    expect(JSON.parse(stdout)).toEqual(ZTUNNEL_NODE_FLAGS);
  });

  it("that a process lacks are named (ztunnel warns at start when run as plain `node main.js`)", () => {
    expect(missingNodeFlags(["--cpu-prof"])).toEqual([...ZTUNNEL_NODE_FLAGS]);
    expect(missingNodeFlags([...ZTUNNEL_NODE_FLAGS, "--cpu-prof"])).toEqual([]);
  });

  it("come before profiling flags and the script in a spawned ztunnel's argv", () => {
    expect(ztunnelNodeArgv("/x/main.js")).toEqual([...ZTUNNEL_NODE_FLAGS, "/x/main.js"]);
    expect(ztunnelNodeArgv("/x/main.js", ["--cpu-prof"])).toEqual([...ZTUNNEL_NODE_FLAGS, "--cpu-prof", "/x/main.js"]);
  });
});
