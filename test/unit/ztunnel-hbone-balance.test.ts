import { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { HboneBalancer } from "../../src/ztunnel/worker/hbone-balance.js";
import { HBONE_LOAD_NOT_UP } from "../../src/ztunnel/worker/messages.js";
import { dialLoopback, loopbackScope } from "../fixtures/loopback.js";

// Which worker serves a freshly accepted inbound HBONE connection (worker/hbone-balance.ts), on
// real loopback sockets: kept and counted, or handed over as a dup that still carries the bytes.

describe("HboneBalancer", () => {
  const { track, acceptOne } = loopbackScope();

  /** An accepted socket (paused, as a listener hands it over) and the client end. */
  async function accepted(): Promise<{ sock: Socket; client: Socket }> {
    const l = await acceptOne();
    const client = track(await dialLoopback(l.port));
    return { sock: await l.accepted, client };
  }

  const loadOf = (...n: number[]): Int32Array => {
    const a = new Int32Array(new SharedArrayBuffer(4 * n.length));
    a.set(n);
    return a;
  };

  it("keeps a connection when no other worker holds fewer, and counts it until released", async () => {
    const load = loadOf(1, 1);
    const { sock } = await accepted();
    const handed: number[] = [];
    const release = new HboneBalancer(load, 0).place(sock, (to) => handed.push(to));
    expect(release).toBeDefined();
    expect(handed).toEqual([]);
    expect([...load]).toEqual([2, 1]);
    release?.();
    release?.();
    expect([...load]).toEqual([1, 1]);
    expect(sock.destroyed).toBe(false);
  });

  it("hands a connection to the least loaded worker (never one that is not up) as a dup that still carries it", async () => {
    const load = loadOf(2, HBONE_LOAD_NOT_UP, 1, 0);
    const { sock, client } = await accepted();
    // Bytes the client sent before the hand-off wait in the kernel for the receiver.
    client.write("hello");
    let fd = -1;
    let to = -1;
    const placed = new HboneBalancer(load, 0).place(sock, (t, f) => {
      to = t;
      fd = f;
    });
    expect(placed).toBeUndefined();
    expect(to).toBe(3);
    expect([...load]).toEqual([2, HBONE_LOAD_NOT_UP, 1, 1]);
    await new Promise((r) => sock.once("close", r));
    // The receiving worker's side: the same connection, both ways.
    const adopted = track(new Socket({ fd, readable: true, writable: true }));
    const first = await new Promise<string>((r) => adopted.once("data", (c: Buffer) => r(c.toString())));
    expect(first).toBe("hello");
    adopted.write("back");
    expect(await new Promise<string>((r) => client.once("data", (c: Buffer) => r(c.toString())))).toBe("back");
    const release = new HboneBalancer(load, 3).adopted();
    release();
    expect([...load]).toEqual([2, HBONE_LOAD_NOT_UP, 1, 0]);
  });

  it("a connection its receiver could not take is uncounted there and counted where it is kept", () => {
    const load = loadOf(0, 1);
    new HboneBalancer(load, 1).refused();
    expect([...load]).toEqual([0, 0]);
    const release = new HboneBalancer(load, 0).keep();
    expect([...load]).toEqual([1, 0]);
    release();
    expect([...load]).toEqual([0, 0]);
  });
});
