import { closeSync, openSync } from "node:fs";
import { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { dupFd } from "../../src/native/index.js";
import { HandoffLedger } from "../../src/ztunnel/inpod/handoffs.js";
import { WorkerPool } from "../../src/ztunnel/inpod/worker-pool.js";
import { fdOf } from "../../src/ztunnel/worker/connections.js";
import type { StateSnapshot } from "../../src/ztunnel/state/types.js";
import type { WorkerSettings } from "../../src/ztunnel/worker/messages.js";
import { captureLogs } from "../fixtures/log-capture.js";
import { dialLoopback, loopbackScope } from "../fixtures/loopback.js";

// Who closes an inbound HBONE connection handed to a worker that dies before taking it
// (inpod/handoffs.ts): the main thread, exactly once, and never a number that was reused.

/** A dup of an accepted connection's fd (what a sending worker hands over) and the client end. */
async function handed({ track, acceptOne }: ReturnType<typeof loopbackScope>): Promise<{ fd: number; client: Socket }> {
  const l = await acceptOne();
  const client = track(await dialLoopback(l.port));
  client.on("error", () => undefined);
  const sock = await l.accepted;
  const fd = dupFd(fdOf(sock));
  sock.destroy();
  return { fd, client };
}

const ended = (client: Socket): Promise<void> => new Promise((r) => (client.readableEnded || client.destroyed ? r() : client.once("end", () => r()).once("close", () => r())));

describe("HandoffLedger", () => {
  const scope = loopbackScope();
  const { track } = scope;

  it("closes what a dead receiver never took, so the client sees the connection end", async () => {
    const ledger = new HandoffLedger();
    const { fd, client } = await handed(scope);
    client.resume();
    ledger.add(1, fd);
    expect(ledger.closeFor(0)).toBe(0);
    expect(ledger.closeFor(1)).toBe(1);
    expect(ledger.size).toBe(0);
    await ended(client);
  });

  it("leaves alone what the receiver took", async () => {
    const ledger = new HandoffLedger();
    const { fd, client } = await handed(scope);
    const id = ledger.add(1, fd);
    ledger.taken(id);
    expect(ledger.closeFor(1)).toBe(0);
    // Still open: it carries bytes through the receiver's socket.
    const adopted = track(new Socket({ fd, readable: true, writable: true }));
    client.write("x");
    expect(await new Promise<string>((r) => adopted.once("data", (c: Buffer) => r(c.toString())))).toBe("x");
  });

  it("does not close a number the dead receiver's own close freed and another file reused", async () => {
    const ledger = new HandoffLedger();
    const { fd, client } = await handed(scope);
    client.resume();
    ledger.add(1, fd);
    // The receiver wrapped and closed it (its sockets die with it) before its answer came.
    closeSync(fd);
    await ended(client);
    // Lower free numbers are taken first: open until the freed one comes back.
    const opened: number[] = [];
    try {
      while (opened.length < 256 && !opened.includes(fd)) opened.push(openSync("/dev/null", "r"));
      expect(opened).toContain(fd);
      expect(ledger.closeFor(1)).toBe(0);
    } finally {
      // All still ours: closing the reused number does not throw EBADF.
      for (const n of opened) closeSync(n);
    }
  });
});

// Two workers of the real pool, as small scripts: worker 0 hands over a connection (a dup the
// test made) when told, worker 1 dies on receiving it without taking it, or takes it first.
const FIXTURE = `
import { parentPort, workerData } from "node:worker_threads";
const { index, handOffFd, receiver } = workerData.settings;
parentPort.postMessage({ t: "ready" });
parentPort.on("message", (m) => {
  if (m.t === "cert" && index === 0) parentPort.postMessage({ t: "hboneHandoff", uid: "pod-1", fd: handOffFd, to: 1, returned: false });
  if (m.t !== "hboneHandoff") return;
  if (receiver === "takes") parentPort.postMessage({ t: "hboneHandoffTaken", id: m.id });
  throw new Error("receiver died with the hand-off in hand");
});
`;

describe("WorkerPool: hand-offs to a worker that dies", () => {
  const scope = loopbackScope();

  async function handOffTo(receiver: "dies" | "takes"): Promise<{ client: Socket; fd: number; pool: WorkerPool; exited: Promise<void> }> {
    const { fd, client } = await handed(scope);
    client.resume();
    const settings = { handOffFd: fd, receiver } as unknown as Omit<WorkerSettings, "index">;
    const pool = new WorkerPool({
      script: new URL(`data:text/javascript,${encodeURIComponent(FIXTURE)}`),
      count: 2,
      settings,
      snapshot: () => ({}) as StateSnapshot,
      log: captureLogs().log,
      restartDelayMs: 60_000,
    });
    await pool.start();
    const exited = new Promise<void>((resolve) => pool.on("changed", () => pool.statuses()[1]?.state === "restarting" && resolve()));
    pool.broadcast({ t: "cert", cert: {} as never });
    return { client, fd, pool, exited };
  }

  it("closes the connection once the receiver dies without taking it", async () => {
    const { client, pool, exited } = await handOffTo("dies");
    try {
      await exited;
      await ended(client);
      expect(pool.handoffsInFlight).toBe(0);
    } finally {
      await pool.stop();
    }
  });

  it("leaves a connection the receiver took to the receiver", async () => {
    const { fd, pool, exited } = await handOffTo("takes");
    try {
      await exited;
      expect(pool.handoffsInFlight).toBe(0);
      // The receiver took it (and, being a script, never wrapped it): the number is still open.
      expect(() => closeSync(fd)).not.toThrow();
    } finally {
      await pool.stop();
    }
  });
});
