import { readdirSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, expect, it } from "vitest";
import { SYSTEM_PYTHON } from "../harness/child-output.js";
import { execIn } from "../harness/netns.js";
import { useNetnsPair } from "../fixtures/netns-pair.js";
import { describePrivileged } from "../harness/privileged.js";
import { compiledFixture } from "../fixtures/native-build.js";
import type { WorkerReport, WorkerTask } from "../fixtures/native-worker.js";
import {
  closeFd,
  createSocket,
  currentThreadNetns,
  netnsCookie,
  netnsCookieOf,
  sameNetns,
} from "../../src/native/index.js";

// Connects N times to 127.0.0.1:<port> and prints {"<first line>": count, ...}.
const COUNT_CLIENT = `
import json, socket, sys
from collections import Counter
port, n = int(sys.argv[1]), int(sys.argv[2])
seen = Counter()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    seen[s.makefile().readline().strip()] += 1
    s.close()
print(json.dumps(seen))
`;

class WorkerRun {
  readonly reports: WorkerReport[] = [];
  readonly exited: Promise<number>;
  #waiters: Array<() => void> = [];

  constructor(readonly worker: Worker) {
    worker.on("message", (r: WorkerReport) => {
      this.reports.push(r);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.exited = new Promise((resolve) => worker.once("exit", resolve));
  }

  async next<K extends WorkerReport["kind"]>(kind: K, timeoutMs = 30_000): Promise<Extract<WorkerReport, { kind: K }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const err = this.reports.find((r) => r.kind === "error");
      if (err) throw new Error(`worker failed: ${JSON.stringify(err)}`);
      const found = this.reports.find((r) => r.kind === kind);
      if (found) return found as Extract<WorkerReport, { kind: K }>;
      if (Date.now() > deadline) throw new Error(`no ${kind} from worker`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

describePrivileged("native layer from worker_threads", () => {
  const nets = useNetnsPair(["nwk-a", "nwk-b"]);
  const { id } = nets;
  const [podA] = nets.names;
  let fixture: string;
  const workers: Worker[] = [];

  function start(task: WorkerTask): WorkerRun {
    const w = new Worker(fixture, { workerData: task });
    workers.push(w);
    return new WorkerRun(w);
  }

  beforeAll(async () => {
    fixture = await compiledFixture("native-worker");
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.terminate()));
  });

  it("two SO_REUSEPORT listeners on one port in P, from two workers, both accept", async () => {
    const task: WorkerTask = { mode: "listen", netnsFd: nets.a.fd, port: 15001, mark: 0x539 };
    const w1 = start(task);
    const w2 = start(task);
    const ids = [(await w1.next("ready")).threadId, (await w2.next("ready")).threadId];
    const n = 64;
    const out = await execIn(podA, SYSTEM_PYTHON, ["-c", COUNT_CLIENT, "15001", String(n)]);
    const seen = JSON.parse(out.stdout) as Record<string, number>;
    expect(Object.keys(seen).sort()).toEqual(ids.map((i) => `worker-${i}`).sort());
    for (const i of ids) expect(seen[`worker-${i}`]).toBeGreaterThan(0);
    w1.worker.postMessage("stop");
    w2.worker.postMessage("stop");
    const done = [(await w1.next("listen-done")).accepted, (await w2.next("listen-done")).accepted];
    expect(done[0]! + done[1]!).toBe(n);
    expect(await w1.exited).toBe(0);
    expect(await w2.exited).toBe(0);
  });

  it("2 workers x 1000 sockets in two pod netns concurrently: every socket where asked, threads unmoved", async () => {
    const cookies = [netnsCookieOf(nets.a), netnsCookieOf(nets.b)];
    expect(cookies[0]).not.toBe(cookies[1]);
    const mainBefore = currentThreadNetns();
    const task: WorkerTask = { mode: "churn", netnsFds: [nets.a.fd, nets.b.fd], cookies: cookies.map(String), iterations: 1000 };
    const runs = [start(task), start(task)];
    // The main thread switches too while the workers run.
    let mainWrong = 0;
    for (let i = 0; i < 1000; i++) {
      const k = i % 2;
      const fd = createSocket(k === 0 ? nets.a : nets.b, { family: 4, type: "tcp" });
      if (netnsCookie(fd) !== cookies[k]) mainWrong++;
      closeFd(fd);
    }
    for (const r of runs) {
      const done = await r.next("churn-done");
      expect(done.errors).toEqual([]);
      expect(done.created).toBe(1000);
      expect(done.wrong).toBe(0);
      expect(done.ownNetnsUnchanged).toBe(true);
      expect(await r.exited).toBe(0);
    }
    expect(mainWrong).toBe(0);
    expect(sameNetns(currentThreadNetns(), mainBefore)).toBe(true);
  });

  it("a worker terminated with SEQPACKET sockets open exits cleanly and its fds are closed", async () => {
    const baseline = openFds();
    const r = start({ mode: "hold-seqpacket", name: `ambient-test-${id}-hold` });
    await r.next("ready");
    expect(openFds()).toBeGreaterThan(baseline);
    await r.worker.terminate();
    await r.exited;
    const deadline = Date.now() + 2000;
    while (openFds() > baseline && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    expect(openFds()).toBe(baseline);
  });
});
