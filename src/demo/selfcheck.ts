#!/usr/bin/env node
// Native self-check: proves on this machine that the addon loads and that its primitives do
// what the data plane relies on — sockets created inside a pod netns stay there and carry the
// packet mark, and a netns fd survives a trip over SEQPACKET + SCM_RIGHTS. Everything it
// creates (one netns, sockets) is removed on exit, also on failure and on Ctrl-C.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { Server, Socket } from "node:net";
import {
  NetnsHandle,
  SeqpacketServer,
  SeqpacketSocket,
  currentThreadNetns,
  getSocketMark,
  netnsCookie,
  netnsCookieOf,
} from "../native/index.js";
import { InPodSocketFactory } from "../sockets/index.js";

const MARK = 0x539;
const nsName = `amb-check-${randomBytes(3).toString("hex")}`;
let nsCreated = false;
const cleanups: Array<() => void> = [];

function step(msg: string): void {
  process.stdout.write(`  • ${msg}\n`);
}

function ip(args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

function cleanup(): void {
  while (cleanups.length > 0) {
    try {
      cleanups.pop()?.();
    } catch {
      // best effort: keep removing the rest
    }
  }
  if (nsCreated) {
    try {
      ip(["netns", "del", nsName]);
    } catch (err) {
      process.stderr.write(`could not delete netns ${nsName}: ${String(err)}\n`);
    }
    nsCreated = false;
  }
}

function fdOf(obj: Server | Socket): number {
  const handle = (obj as unknown as { _handle?: { fd?: number } })._handle;
  if (handle?.fd === undefined || handle.fd < 0) throw new Error("socket has no fd");
  return handle.fd;
}

async function echoOnce(server: Server, client: Socket, payload: string): Promise<string> {
  server.once("connection", (conn: Socket) => conn.pipe(conn));
  return await new Promise<string>((resolve, reject) => {
    let got = "";
    client.on("data", (d: Buffer) => {
      got += d.toString();
      if (got.length >= payload.length) {
        client.end();
        resolve(got);
      }
    });
    client.once("error", reject);
    client.once("connect", () => client.write(payload));
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error("the self-check needs root (it creates a network namespace)");
  }
  process.stdout.write("ambient-node native self-check\n");
  const hostNs = currentThreadNetns();
  step(`addon loaded; this thread's netns is dev=${hostNs.dev} ino=${hostNs.ino}`);

  ip(["netns", "add", nsName]);
  nsCreated = true;
  ip(["-n", nsName, "link", "set", "lo", "up"]);
  const pod = NetnsHandle.open(`/var/run/netns/${nsName}`);
  cleanups.push(() => pod.close());
  const podCookie = netnsCookieOf(pod);
  step(`created pod netns ${nsName} (cookie ${podCookie})`);

  const factory = new InPodSocketFactory(pod, { mark: MARK, reusePort: true });
  const server = await factory.listenTcp({ address: "127.0.0.1", port: 15008 });
  cleanups.push(() => server.close());
  const listenerFd = fdOf(server);
  const listenerCookie = netnsCookie(listenerFd);
  const listenerMark = getSocketMark(listenerFd);
  if (listenerCookie !== podCookie) throw new Error(`listener landed in netns cookie ${listenerCookie}, expected ${podCookie}`);
  if (listenerMark !== MARK) throw new Error(`listener mark is 0x${listenerMark.toString(16)}, expected 0x${MARK.toString(16)}`);
  step(`listener 127.0.0.1:15008 is inside the pod netns and carries mark 0x${listenerMark.toString(16)}`);

  const client = factory.connectTcp({ host: "127.0.0.1", port: 15008 });
  cleanups.push(() => client.destroy());
  const echoed = await echoOnce(server, client, "hello from inside the pod");
  if (echoed !== "hello from inside the pod") throw new Error(`echo returned ${JSON.stringify(echoed)}`);
  step("a connection made inside the pod netns reached it and echoed");

  if (currentThreadNetns().ino !== hostNs.ino) throw new Error("main thread did not return to its own netns");
  step("the main thread is back in its own netns");

  const address = { abstract: `ambient-selfcheck-${process.pid}` };
  const seqServer = SeqpacketServer.listen(address);
  cleanups.push(() => seqServer.close());
  const received = new Promise<{ data: Buffer; fd: number | undefined }>((resolve) => {
    seqServer.once("connection", (conn: SeqpacketSocket) => {
      cleanups.push(() => conn.close());
      conn.once("message", (data: Buffer, fd: number | undefined) => resolve({ data, fd }));
    });
  });
  const seqClient = await SeqpacketSocket.connect(address);
  cleanups.push(() => seqClient.close());
  await seqClient.send(Buffer.from([0x08, 0x01]), pod.fd);
  const msg = await received;
  if (msg.fd === undefined) throw new Error("the netns fd did not arrive over SCM_RIGHTS");
  const got = NetnsHandle.fromFd(msg.fd);
  cleanups.push(() => got.close());
  const a = pod.identity();
  const b = got.identity();
  if (a.dev !== b.dev || a.ino !== b.ino) throw new Error("the received fd names another netns");
  step(`netns fd passed over SEQPACKET arrived as the same netns (ino ${b.ino})`);

  process.stdout.write("self-check passed\n");
}

process.once("SIGINT", () => {
  cleanup();
  process.exit(130);
});

main()
  .then(() => {
    cleanup();
  })
  .catch((err: unknown) => {
    cleanup();
    process.stderr.write(`self-check failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
