import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { SYSTEM_PYTHON } from "../harness/child-output.js";
import { createNetns, deleteNetns, killAndWait, runId } from "../harness/netns.js";
import { describePrivileged } from "../harness/privileged.js";
import { compiledFixture } from "../fixtures/native-build.js";
import type { PeerReport } from "../fixtures/native-seqpacket-peer.js";
import {
  NativeError,
  NetnsHandle,
  SeqpacketServer,
  SeqpacketSocket,
} from "../../src/native/index.js";

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

/** Collects 'message' payloads of a socket as parsed JSON, in order. */
class Inbox<T> {
  readonly items: T[] = [];
  #wake: (() => void) | null = null;

  constructor(sock: SeqpacketSocket) {
    sock.on("message", (data: Buffer) => {
      this.items.push(JSON.parse(data.toString()) as T);
      this.#wake?.();
    });
  }

  async take(timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (this.items.length === 0) {
      if (Date.now() > deadline) throw new Error("no message in time");
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    return this.items.shift()!;
  }
}

async function nextConnection(server: SeqpacketServer): Promise<SeqpacketSocket> {
  return await new Promise((resolve) => server.once("connection", resolve));
}

// Sends one datagram carrying two fds (our API refuses to), to check the receiver rejects it.
const TWO_FDS_CLIENT = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
r, w = os.pipe()
socket.send_fds(s, [b"two"], [r, w])
s.send(b"then-one-plain")
s.recv(16)
`;

// Connects, waits until told on stdin, then drains: prints "<datagrams> <fds>".
const SLOW_READER = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
print("connected", flush=True)
sys.stdin.readline()
count = fds = 0
while True:
    msg, got, flags, addr = socket.recv_fds(s, 4096, 4)
    if not msg:
        break
    count += 1
    fds += len(got)
    for f in got:
        os.close(f)
print(count, fds, flush=True)
`;

// Listens with backlog 0 and accepts only when told on stdin (one line per accept).
const LAZY_LISTENER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1])
s.listen(0)
print("listening", flush=True)
held = []
for line in sys.stdin:
    c, _ = s.accept()
    held.append(c)
    print("accepted", flush=True)
`;

async function lineFrom(child: ChildProcess, line: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let out = "";
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.split("\n").includes(line)) {
        child.stdout!.off("data", onData);
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.once("exit", () => reject(new Error(`child exited before "${line}"`)));
  });
}

describePrivileged("SEQPACKET sockets with SCM_RIGHTS", () => {
  const id = runId();
  const pod = `nsq-p-${id}`;
  let podNs: NetnsHandle;
  let peerFixture: string;
  let dir: string;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    peerFixture = await compiledFixture("native-seqpacket-peer");
    await createNetns(pod);
    podNs = NetnsHandle.open(`/var/run/netns/${pod}`);
    dir = mkdtempSync(join(tmpdir(), "ambient-seqpacket-"));
  });

  afterAll(async () => {
    for (const c of children) await killAndWait(c);
    podNs?.close();
    await deleteNetns(pod);
    rmSync(dir, { recursive: true, force: true });
  });

  it("a netns fd reaches a separate process intact; truncation and non-netns fds are reported", async () => {
    const name = `ambient-test-${id}-peer`;
    const server = SeqpacketServer.listen({ abstract: name });
    try {
      const accepted = nextConnection(server);
      const child = spawn(process.execPath, [peerFixture, `@${name}`, "64"], { stdio: ["ignore", "inherit", "inherit"] });
      children.push(child);
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
      const sock = await accepted;
      const inbox = new Inbox<PeerReport>(sock);

      const hello = await inbox.take();
      expect(hello).toEqual({ kind: "hello", pid: child.pid, uid: 0, peer: { pid: process.pid, uid: 0, gid: 0 } });
      expect(sock.peerCredentials()).toEqual({ pid: child.pid, uid: 0, gid: 0 });

      await sock.send(Buffer.from("here is a netns"), podNs.fd);
      const id0 = podNs.identity();
      expect(await inbox.take()).toEqual({ kind: "netns", dev: String(id0.dev), ino: String(id0.ino), cloexec: true });

      await sock.send(Buffer.alloc(100, 0x61)); // receiver's maxDatagram is 64
      const trunc = await inbox.take();
      expect(trunc).toMatchObject({ kind: "datagramError", code: "ERR_DATAGRAM_TRUNCATED" });
      await sock.send(Buffer.from("still open"));
      expect(await inbox.take()).toEqual({ kind: "data", text: "still open" });

      const file = openSync("/etc/hostname", "r");
      try {
        await sock.send(Buffer.from("not a netns"), file);
      } finally {
        closeSync(file);
      }
      const bad = await inbox.take();
      expect(bad).toMatchObject({ kind: "not-netns", code: "EINVAL", fdStillOpen: true });
      expect((bad as { message: string }).message).toMatch(/^fd \d+ is a regular file, not a network namespace$/);

      const closed = new Promise((resolve) => sock.once("close", resolve));
      sock.close();
      await closed;
      expect(sock.closed).toBe(true);
      await expect(sock.send(Buffer.from("x"))).rejects.toMatchObject({ code: "ERR_SOCKET_CLOSED" });
      expect(await exited).toBe(0); // the child saw EOF and left
    } finally {
      server.close();
    }
  });

  it("path sockets: mode, EADDRINUSE without unlinking, unlink on close", async () => {
    const path = join(dir, "zds.sock");
    const server = SeqpacketServer.listen(path, { mode: 0o600 });
    const st = statSync(path);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);

    let inUse: unknown;
    try {
      SeqpacketServer.listen(path);
    } catch (err) {
      inUse = err;
    }
    expect(inUse).toBeInstanceOf(NativeError);
    expect((inUse as NativeError).code).toBe("EADDRINUSE");
    expect((inUse as NativeError).message).toBe(
      `listen on unix seqpacket socket ${path}: Address already in use — another process listens there, or a stale socket file was left behind: remove it if no process owns it`,
    );
    expect(existsSync(path)).toBe(true);

    const accepted = nextConnection(server);
    const client = await SeqpacketSocket.connect(path);
    const sock = await accepted;
    const got = new Promise<[string, number | undefined]>((resolve) => client.once("message", (d: Buffer, fd?: number) => resolve([d.toString(), fd])));
    await sock.send(Buffer.from("pong"));
    expect(await got).toEqual(["pong", undefined]);

    const closed = new Promise((resolve) => server.once("close", resolve));
    server.close();
    await closed;
    expect(existsSync(path)).toBe(false);
    // Accepted sockets outlive the listener.
    const again = new Promise<string>((resolve) => sock.once("message", (d: Buffer) => resolve(d.toString())));
    await client.send(Buffer.from("after close"));
    expect(await again).toBe("after close");
    client.close();
    sock.close();
  });

  it("a datagram with two fds is refused and both fds are closed", async () => {
    const path = join(dir, "two.sock");
    const server = SeqpacketServer.listen(path);
    try {
      const accepted = nextConnection(server);
      const child = spawn(SYSTEM_PYTHON, ["-c", TWO_FDS_CLIENT, path], { stdio: ["ignore", "ignore", "inherit"] });
      children.push(child);
      const sock = await accepted;
      const baseline = openFds();
      const events: string[] = [];
      const done = new Promise<void>((resolve) => {
        sock.on("datagramError", (e: NativeError) => events.push(`error:${e.code}`));
        sock.on("message", (d: Buffer, fd?: number) => {
          events.push(`message:${d.toString()}:${fd}`);
          resolve();
        });
      });
      await done;
      expect(events).toEqual(["error:ERR_TOO_MANY_FDS", "message:then-one-plain:undefined"]);
      expect(openFds()).toBe(baseline);
      sock.close();
      await killAndWait(child);
    } finally {
      server.close();
    }
  });

  it("sends queue on EAGAIN and all arrive, fds included, after the caller closed its own", async () => {
    const path = join(dir, "slow.sock");
    const server = SeqpacketServer.listen(path);
    try {
      const accepted = nextConnection(server);
      const child = spawn(SYSTEM_PYTHON, ["-c", SLOW_READER, path], { stdio: ["pipe", "pipe", "inherit"] });
      children.push(child);
      let out = "";
      child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      const sock = await accepted;
      const n = 1000;
      const sends: Array<Promise<void>> = [];
      const fd = openSync("/etc/hostname", "r");
      for (let i = 0; i < n; i++) sends.push(sock.send(Buffer.alloc(1024, i % 256), i % 10 === 0 ? fd : undefined));
      closeSync(fd); // queued sends hold their own dup
      let settled = 0;
      for (const p of sends) void p.then(() => settled++);
      await new Promise((r) => setTimeout(r, 100));
      expect(settled).toBeLessThan(n); // the reader is not reading: the socket buffer is full
      child.stdin!.write("go\n");
      await Promise.all(sends);
      sock.close();
      await new Promise((resolve) => child.once("exit", resolve));
      expect(out.trim().split("\n").pop()).toBe(`${n} ${n / 10}`);
    } finally {
      server.close();
    }
  });

  it("connect retries while the listener's backlog is full, and gives up after timeoutMs", async () => {
    const path = join(dir, "lazy.sock");
    const child = spawn(SYSTEM_PYTHON, ["-c", LAZY_LISTENER, path], { stdio: ["pipe", "pipe", "inherit"] });
    children.push(child);
    await lineFrom(child, "listening");
    const first = await SeqpacketSocket.connect(path); // fills the backlog (one pending)
    await expect(SeqpacketSocket.connect(path, { timeoutMs: 150 })).rejects.toMatchObject({
      code: "EAGAIN",
      message: expect.stringContaining("backlog full for 150 ms"),
    });
    const second = SeqpacketSocket.connect(path, { timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 100));
    child.stdin!.write("accept\n"); // frees the backlog slot: the retry gets in
    const sock = await second;
    expect(sock.closed).toBe(false);
    sock.close();
    first.close();
    await killAndWait(child);
  });

  it("a peer closing with unread data surfaces as 'error' (ECONNRESET) then 'close'", async () => {
    const path = join(dir, "reset.sock");
    const server = SeqpacketServer.listen(path);
    try {
      const accepted = nextConnection(server);
      // Connects, then closes on "go" without reading what was sent to it.
      const child = spawn(SYSTEM_PYTHON, ["-c", SLOW_READER.replace("count = fds = 0", "sys.exit(0)"), path], {
        stdio: ["pipe", "pipe", "inherit"],
      });
      children.push(child);
      const sock = await accepted;
      const events: string[] = [];
      const closed = new Promise<void>((resolve) => {
        sock.on("error", (e: NativeError) => events.push(`error:${e.code}:${e.syscall}`));
        sock.on("close", () => {
          events.push("close");
          resolve();
        });
      });
      await sock.send(Buffer.from("never read"));
      child.stdin!.write("go\n");
      await closed;
      expect(events).toEqual(["error:ECONNRESET:recvmsg", "close"]);
      expect(sock.closed).toBe(true);
      await killAndWait(child);
    } finally {
      server.close();
    }
  });

  it("unref'd servers and sockets do not keep a process alive; ref'd ones do", async () => {
    const fixture = await compiledFixture("native-unref");
    const unref = spawn(process.execPath, [fixture, "unref", `ambient-test-${id}-unref`], { stdio: ["ignore", "pipe", "inherit"] });
    children.push(unref);
    const code = await new Promise<number | string | null>((resolve) => {
      const timer = setTimeout(() => resolve("still running after 5 s"), 5000);
      unref.once("exit", (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code).toBe(0);
    const ref = spawn(process.execPath, [fixture, "ref", `ambient-test-${id}-ref`], { stdio: ["ignore", "pipe", "inherit"] });
    children.push(ref);
    await lineFrom(ref, "ready");
    await new Promise((r) => setTimeout(r, 300));
    expect(ref.exitCode).toBeNull();
    await killAndWait(ref);
  });

  it("clear errors for connecting nowhere, and no fd leaks over many round trips", async () => {
    await expect(SeqpacketSocket.connect(join(dir, "missing.sock"))).rejects.toMatchObject({
      code: "ENOENT",
      message: expect.stringMatching(/^connect to unix seqpacket socket .*missing\.sock: No such file or directory — nothing listens/),
    });
    await expect(SeqpacketSocket.connect({ abstract: `ambient-test-${id}-none` })).rejects.toMatchObject({ code: "ECONNREFUSED" });

    const baseline = openFds();
    for (let i = 0; i < 50; i++) {
      const server = SeqpacketServer.listen({ abstract: `ambient-test-${id}-loop` });
      const accepted = nextConnection(server);
      const client = await SeqpacketSocket.connect({ abstract: `ambient-test-${id}-loop` });
      const sock = await accepted;
      const received = new Promise<number | undefined>((resolve) => sock.once("message", (_d: Buffer, fd?: number) => resolve(fd)));
      await client.send(Buffer.from("ns"), podNs.fd);
      const fd = await received;
      expect(fd).toBeDefined();
      NetnsHandle.fromFd(fd!).close();
      const eof = new Promise((resolve) => sock.once("close", resolve));
      client.close();
      await eof; // the server side sees EOF
      server.close();
    }
    await new Promise((r) => setImmediate(r));
    expect(openFds()).toBe(baseline);
  });
});
