import fc from "fast-check";
import { mkdirSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { closeFd, NetnsHandle, SeqpacketServer, SeqpacketSocket } from "../../src/native/index.js";
import { rootLogger } from "../../src/shared/log.js";
import { decodeResponse } from "../../src/zds/codec.js";
import { createZdsClient, createZdsServer } from "../../src/zds/index.js";
import { createNetns, deleteNetns, runId } from "../harness/netns.js";
import { describePrivileged } from "../harness/privileged.js";
import { clientDatagram, clientStepArb, playServerSteps, serverStepArb, type ClientStep, type ServerStep } from "../fixtures/zds-fuzz-arbs.js";
import { RecordingManager } from "../fixtures/zds-memory.js";
import { openFdCount, RawSeq } from "../fixtures/zds-raw-seqpacket.js";

// The smaller real-socket run of the structure-aware fuzz (the bulk runs in memory, see
// test/unit/zds-fuzz.test.ts): real SEQPACKET, real pod netns fds, /proc/self/fd counted per case.

const RUNS = 250;
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

describePrivileged("ZDS fuzz over real SEQPACKET sockets", () => {
  const id = runId();
  const nsA = `zdf${id}a`;
  const nsB = `zdf${id}b`;
  let dir: string;
  let paths: Record<string, string>;

  beforeAll(async () => {
    rootLogger().level = "silent";
    dir = mkdtempSync(join(tmpdir(), "zds-fuzz-"));
    const a = await createNetns(nsA);
    const b = await createNetns(nsB);
    paths = { n1: a, n2: b, n3: a, n9: b };
  });

  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await deleteNetns(nsA);
    await deleteNetns(nsB);
  });

  /** Opens the fd a step attaches: a pod netns, or /dev/null for "not a netns". */
  function openFor(ns: string | undefined): number {
    if (ns === undefined) return openSync("/dev/null", "r");
    const h = NetnsHandle.open(paths[ns]!);
    const fd = h.fd;
    return fd; // closed with closeFd below; the handle object is dropped
  }

  it(`client (ztunnel side): ${RUNS} mutated request sequences, no fd leak`, async () => {
    const path = join(dir, "cli", "ztunnel.sock");
    mkdirSync(join(dir, "cli"));
    const srv = SeqpacketServer.listen(path, { maxDatagram: 4096 });
    const conns: RawSeq[] = [];
    srv.on("connection", (s: SeqpacketSocket) => conns.push(new RawSeq(s)));
    const baseline = openFdCount();
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(clientStepArb, { minLength: 1, maxLength: 6 }), async (steps: ClientStep[]) => {
          const manager = new RecordingManager<NetnsHandle>();
          const client = createZdsClient(manager, { socketPath: path, initialBackoffMs: 1, maxBackoffMs: 2, retryIntervalMs: 60_000 });
          const first = conns.length;
          client.start();
          const current = async (): Promise<RawSeq> => {
            const deadline = Date.now() + 3000;
            for (;;) {
              const c = conns.at(-1);
              if (conns.length > first && c && !c.closed) {
                await c.nth(0);
                return c;
              }
              if (Date.now() > deadline) throw new Error("client did not connect");
              await settle();
            }
          };
          try {
            for (const step of steps) {
              const c = await current();
              if (step.t === "reconnect") {
                c.sock.close();
                continue;
              }
              const { bytes, fdNs } = clientDatagram(step);
              const before = c.received.length;
              const fd = fdNs === null ? undefined : openFor(fdNs);
              await c.send(bytes, fd).catch(() => {});
              if (fd !== undefined) closeFd(fd);
              await c.until(() => c.received.length > before || c.closed, 3000, "an Ack or a close");
              if (c.received.length > before) {
                expect(c.received.length).toBe(before + 1);
                if (decodeResponse(c.received[before]!.data).error.startsWith("protocol error")) await c.waitClosed();
              }
            }
          } finally {
            await client.close();
            for (const c of conns) c.sock.close();
          }
          await settle();
          expect(manager.running.size).toBe(0);
          expect(openFdCount()).toBe(baseline);
        }),
        { numRuns: RUNS },
      );
    } finally {
      srv.close();
    }
  }, 120_000);

  it(`server (agent side): ${RUNS} mutated hello/ack sequences, no fd leak`, async () => {
    const a = NetnsHandle.open(paths.n1!);
    const baseline = openFdCount();
    let n = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(serverStepArb, { minLength: 1, maxLength: 8 }), async (steps: ServerStep[]) => {
          const path = join(dir, `srv${n++}`, "ztunnel.sock");
          const server = createZdsServer(
            { list: () => [{ uid: "a", info: { name: "a", namespace: "ns", serviceAccount: "sa" }, netns: a }, { uid: "b", info: { name: "b", namespace: "ns", serviceAccount: "sa" } }] },
            { socketPath: path, ackTimeoutMs: 60_000, helloTimeoutMs: 60_000 },
          );
          const { peers, settled } = await playServerSteps(steps, {
            server,
            netnsArg: (ns) => paths[ns]!,
            openFd: () => openFor("n2"),
            closeFd,
            connect: async () => new RawSeq(await SeqpacketSocket.connect(path)),
            hangUp: (peer) => peer.sock.close(),
            settle,
          });
          server.close();
          await Promise.all(settled);
          for (const p of peers) {
            p.sock.close();
            for (const m of p.received) if (m.fd !== undefined) closeFd(m.fd);
          }
          await settle();
          expect(server.connectedCount).toBe(0);
          expect(openFdCount()).toBe(baseline);
        }),
        { numRuns: RUNS },
      );
    } finally {
      a.close();
    }
  }, 120_000);
});
