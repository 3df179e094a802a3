import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { setThreadName } from "../../src/native/index.js";
import { repoRoot } from "../fixtures/native-build.js";

// setThreadName names the calling thread only (PR_SET_NAME), as the kernel shows it.

const ADDON = `${repoRoot}/native/build/Release/ambient_native.node`;

function nameInWorker(name: string): Promise<{ comm: string } | { error: string }> {
  const code = `
    const { parentPort, workerData } = require("node:worker_threads");
    const native = require(workerData.addon);
    try {
      native.setThreadName(workerData.name);
      parentPort.postMessage({ comm: require("node:fs").readFileSync("/proc/thread-self/comm", "utf8").trim() });
    } catch (e) {
      parentPort.postMessage({ error: e.message });
    }`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { addon: ADDON, name } });
    w.once("message", (m: { comm: string } | { error: string }) => {
      resolve(m);
      void w.terminate();
    });
    w.once("error", reject);
  });
}

describe("setThreadName", () => {
  it("names the calling thread and no other", async () => {
    const before = readFileSync("/proc/thread-self/comm", "utf8");
    expect(await nameInWorker("ztunnel-w7")).toEqual({ comm: "ztunnel-w7" });
    expect(readFileSync("/proc/thread-self/comm", "utf8")).toBe(before);
  });

  it("refuses a name the kernel would cut, and an empty one", async () => {
    expect(await nameInWorker("ztunnel-worker-10")).toEqual({ error: "setThreadName: name is too long (17 bytes, at most 15)" });
    expect(await nameInWorker("")).toEqual({ error: "setThreadName: name must not be empty" });
    expect(() => setThreadName("x".repeat(16))).toThrow(/at most 15/);
  });
});
