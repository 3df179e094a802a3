import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server, Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { SYSTEM_PYTHON, TCP_CLIENT } from "../harness/child-output.js";
import { execIn, run } from "../harness/netns.js";
import { useNetnsPair } from "../fixtures/netns-pair.js";
import { readAll } from "../fixtures/socket-io.js";
import { describePrivileged } from "../harness/privileged.js";
import { compiledFixture } from "../fixtures/native-build.js";
import {
  closeFd,
  createSocket,
  currentThreadNetns,
  getSocketMark,
  NativeError,
  netnsCookie,
  netnsCookieOf,
  NetnsHandle,
  sameNetns,
  type SocketSpec,
  writeNetSysctl,
} from "../../src/native/index.js";
import { InPodSocketFactory, PlainSocketFactory, serverFromFd, socketConnectFromFd } from "../../src/sockets/index.js";

function fdOf(x: Server | Socket): number {
  const fd = (x as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new Error("no fd on this handle");
  return fd;
}

function socketInode(fd: number): string {
  const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
  if (!m) throw new Error(`fd ${fd} is not a socket`);
  return m[1]!;
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

function portOf(server: Server): number {
  const a = server.address();
  if (a === null || typeof a === "string") throw new Error("not a TCP server");
  return a.port;
}

async function closeServer(server: Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

function catchNative(fn: () => unknown): NativeError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NativeError);
    return err as NativeError;
  }
  throw new Error("expected a NativeError");
}

describePrivileged("native netns handles and in-pod sockets", () => {
  const nets = useNetnsPair(["nat-p", "nat-q"]);
  const [pod] = nets.names;
  const { id } = nets;

  it("in-pod listener accepts inside P, has P's cookie and mark 0x539, and ss shows it in P only", async () => {
    const before = currentThreadNetns();
    const factory = new InPodSocketFactory(nets.a, { mark: 0x539, reusePort: true });
    const server = await factory.listenTcp({ address: "127.0.0.1", port: 0, backlog: 37 });
    try {
      expect(sameNetns(currentThreadNetns(), before)).toBe(true);
      server.on("connection", (s: Socket) => s.end("hello-from-pod\n"));
      const port = portOf(server);
      const fd = fdOf(server);

      const out = await execIn(pod, SYSTEM_PYTHON, [TCP_CLIENT, "127.0.0.1", String(port)]);
      expect(out.stdout.trim()).toBe("hello-from-pod");

      expect(netnsCookie(fd)).toBe(netnsCookieOf(nets.a));
      expect(netnsCookie(fd)).not.toBe(netnsCookieOf(nets.b));
      expect(getSocketMark(fd)).toBe(0x539);

      // ss -e prints the socket inode, -p the owning process.
      const ino = socketInode(fd);
      const inPod = (await execIn(pod, "ss", ["-tlnpe"])).stdout;
      const line = inPod.split("\n").find((l) => l.includes(`ino:${ino}`));
      expect(line, inPod).toBeDefined();
      expect(line).toContain(`127.0.0.1:${port}`);
      expect(line).toContain(`pid=${process.pid},`);
      expect(line).toMatch(/^LISTEN\s+0\s+37\s/); // Send-Q of a listener is its backlog
      const onHost = (await run("ss", ["-tlne"])).stdout;
      expect(onHost).not.toContain(`ino:${ino} `);
    } finally {
      await closeServer(server);
    }
  });

  it("in-pod outbound: connects from P with the mark, and binds a source address", async () => {
    await execIn(pod, "ip", ["addr", "add", "10.77.0.1/24", "dev", "lo"]);
    const factory = new InPodSocketFactory(nets.a, { mark: 0x539, reusePort: false });
    const server = await factory.listenTcp({ address: "0.0.0.0", port: 0 });
    const seen: Array<{ remote: string | undefined; cookie: bigint }> = [];
    server.on("connection", (s: Socket) => {
      seen.push({ remote: s.remoteAddress, cookie: netnsCookie(fdOf(s)) });
      s.end("ok\n");
    });
    try {
      for (const source of [undefined, "10.77.0.1"]) {
        const sock = factory.connectTcp({
          host: "127.0.0.1",
          port: portOf(server),
          ...(source ? { sourceAddress: source } : {}),
          keepAlive: { idleSec: 30, intervalSec: 5, count: 3 },
          userTimeoutMs: 10_000,
        });
        const got = await new Promise<string>((resolve, reject) => {
          let data = "";
          sock.on("data", (d: Buffer) => (data += d.toString()));
          sock.on("end", () => resolve(data));
          sock.on("error", reject);
          sock.on("connect", () => {
            expect(getSocketMark(fdOf(sock))).toBe(0x539);
            expect(netnsCookie(fdOf(sock))).toBe(netnsCookieOf(nets.a));
          });
        });
        sock.destroy();
        expect(got).toBe("ok\n");
      }
      expect(seen.map((s) => s.remote)).toEqual(["127.0.0.1", "10.77.0.1"]);
      for (const s of seen) expect(s.cookie).toBe(netnsCookieOf(nets.a));
    } finally {
      await closeServer(server);
    }
  });

  it("connectTcp failures arrive as 'error' on the returned socket", async () => {
    const factory = new InPodSocketFactory(nets.a, { mark: 0x539, reusePort: false });
    // A spec error (mixed families) and a kernel error (nothing listens) both surface as 'error'.
    const sock = factory.connectTcp({ host: "127.0.0.1", port: 9, sourceAddress: "::1" });
    const err = await new Promise<Error>((resolve) => sock.on("error", resolve));
    expect(err.message).toMatch(/different IP families/);
    const refused = factory.connectTcp({ host: "127.0.0.1", port: 9 });
    const err2 = await new Promise<NodeJS.ErrnoException>((resolve) => refused.on("error", resolve));
    expect(err2.code).toBe("ECONNREFUSED");
  });

  it("plain factory: sockets in the thread's own netns, no mark", async () => {
    const factory = new PlainSocketFactory();
    const server = await factory.listenTcp({ address: "127.0.0.1", port: 0 });
    try {
      const self = NetnsHandle.openPid(process.pid);
      try {
        expect(netnsCookie(fdOf(server))).toBe(netnsCookieOf(self));
      } finally {
        self.close();
      }
      expect(getSocketMark(fdOf(server))).toBe(0);
      server.on("connection", (s: Socket) => s.end("plain\n"));
      const sock = factory.connectTcp({ host: "127.0.0.1", port: portOf(server) });
      const data = (await readAll(sock)).toString();
      sock.destroy();
      expect(data).toBe("plain\n");
    } finally {
      await closeServer(server);
    }
  });

  it("IPv6 listener and transparent option in P", async () => {
    const factory = new InPodSocketFactory(nets.a, { mark: 0x539, reusePort: true });
    const server = await factory.listenTcp({ address: "::1", port: 0, transparent: true });
    try {
      server.on("connection", (s: Socket) => s.end("v6\n"));
      const out = await execIn(pod, SYSTEM_PYTHON, [TCP_CLIENT, "::1", String(portOf(server))]);
      expect(out.stdout.trim()).toBe("v6");
      expect(netnsCookie(fdOf(server))).toBe(netnsCookieOf(nets.a));
    } finally {
      await closeServer(server);
    }
  });

  it("fd helpers: a non-listening fd is refused and closed; a hostname is refused before connecting", async () => {
    const udp = createSocket(nets.a, { family: 4, type: "udp" });
    await expect(serverFromFd(udp)).rejects.toThrow(/is not a listening socket/);
    expect(() => readlinkSync(`/proc/self/fd/${udp}`)).toThrow();
    const bound = createSocket(nets.a, { family: 4, type: "tcp", bind: { address: "127.0.0.1", port: 0 } });
    await expect(serverFromFd(bound)).rejects.toThrow(/is not a listening socket/);
    expect(() => readlinkSync(`/proc/self/fd/${bound}`)).toThrow();
    const tcp = createSocket(nets.a, { family: 4, type: "tcp" });
    expect(() => socketConnectFromFd(tcp, "localhost", 80)).toThrow(/needs an IP address/);
    expect(() => readlinkSync(`/proc/self/fd/${tcp}`)).toThrow();
  });

  it("writeNetSysctl sets a per-netns sysctl in that netns only, and names what failed", async () => {
    const before = currentThreadNetns();
    const [, other] = nets.names;
    const read = async (ns: string): Promise<string> => (await execIn(ns, "sysctl", ["-n", "net.ipv4.tcp_migrate_req"])).stdout.trim();
    const hostBefore = (await run("sysctl", ["-n", "net.ipv4.tcp_migrate_req"])).stdout.trim();
    expect(await read(pod)).toBe("0");
    writeNetSysctl(nets.a.usableFd("test"), "ipv4/tcp_migrate_req", "1");
    expect(await read(pod)).toBe("1");
    expect(await read(other)).toBe("0");
    expect((await run("sysctl", ["-n", "net.ipv4.tcp_migrate_req"])).stdout.trim()).toBe(hostBefore);
    expect(sameNetns(currentThreadNetns(), before)).toBe(true);

    const missing = catchNative(() => writeNetSysctl(nets.a.usableFd("test"), "ipv4/no_such_sysctl", "1"));
    expect(missing.code).toBe("ENOENT");
    expect(missing.message).toContain("/proc/sys/net/ipv4/no_such_sysctl");
    expect(() => writeNetSysctl(nets.a.usableFd("test"), "ipv4/../../kernel/hostname", "x")).toThrow(/not a name under \/proc\/sys\/net/);
    expect(sameNetns(currentThreadNetns(), before)).toBe(true);
  });

  describe("errors", () => {
    it("open on a bad path names the path", () => {
      const e = catchNative(() => NetnsHandle.open(`/var/run/netns/nope-${id}`));
      expect(e.code).toBe("ENOENT");
      expect(e.syscall).toBe("open");
      expect(e.message).toContain(`/var/run/netns/nope-${id}`);
      const notNs = catchNative(() => NetnsHandle.open("/etc/hostname"));
      expect(notNs.message).toBe("/etc/hostname is a regular file, not a network namespace");
      const mnt = catchNative(() => NetnsHandle.open("/proc/self/ns/mnt"));
      expect(mnt.message).toContain("is a mount namespace, not a network namespace");
    });

    it("fromFd refuses a non-netns fd and leaves it open for the caller", () => {
      const fd = openSync("/etc/hostname", "r");
      try {
        const e = catchNative(() => NetnsHandle.fromFd(fd));
        expect(e.message).toBe(`fd ${fd} is a regular file, not a network namespace`);
        expect(() => readlinkSync(`/proc/self/fd/${fd}`)).not.toThrow();
      } finally {
        closeSync(fd);
      }
    });

    it("a closed handle refuses every use", () => {
      const h = nets.a.dup();
      expect(h.fd).toBeGreaterThan(2);
      expect(sameNetns(h.identity(), nets.a.identity())).toBe(true);
      h.close();
      h.close();
      expect(h.closed).toBe(true);
      expect(h.fd).toBe(-1);
      expect(() => h.identity()).toThrow(/closed/);
      expect(() => h.dup()).toThrow(/closed/);
      expect(() => createSocket(h, { family: 4, type: "tcp" })).toThrow(/closed/);
    });

    it("spec mistakes are TypeErrors before any switch", () => {
      const bogus = { family: 4, type: "tcp", reuse_port: true } as unknown as SocketSpec;
      expect(() => createSocket(nets.a, bogus)).toThrow(/unknown SocketSpec option "reuse_port"/);
      expect(() => createSocket(nets.a, { family: 4, type: "tcp", bind: { address: "::1", port: 1 } })).toThrow(TypeError);
      expect(() => createSocket(nets.a, { family: 4, type: "udp", listen: { backlog: 1 } })).toThrow(/only valid for tcp/);
      expect(() => createSocket(nets.a, { family: 5, type: "tcp" } as unknown as SocketSpec)).toThrow(/family must be 4 or 6/);
      expect(() => createSocket(nets.a, { family: 4, type: "sctp" } as unknown as SocketSpec)).toThrow(/"tcp" or "udp"/);
      expect(() => createSocket(nets.a, { family: 4, type: "tcp", mark: -1 })).toThrow(/32-bit/);
    });

    it("failed binds name the step and address, and leave the thread where it was", () => {
      const before = currentThreadNetns();
      const e = catchNative(() => createSocket(nets.a, { family: 4, type: "tcp", bind: { address: "10.200.0.1", port: 15008 } }));
      expect(e.message).toMatch(/^bind 10\.200\.0\.1:15008: Cannot assign requested address/);
      expect(e.code).toBe("EADDRNOTAVAIL");
      // With IP_FREEBIND or IP_TRANSPARENT (source spoofing) a foreign address binds.
      closeFd(createSocket(nets.a, { family: 4, type: "tcp", freebind: true, bind: { address: "10.200.0.1", port: 15008 } }));
      closeFd(createSocket(nets.a, { family: 4, type: "tcp", transparent: true, bindAddressNoPort: true, bind: { address: "10.200.0.1", port: 0 } }));
      closeFd(createSocket(nets.a, { family: 6, type: "tcp", transparent: true, bind: { address: "fd00:200::1", port: 0 } }));
      expect(() => createSocket(nets.a, { family: 6, type: "tcp", bind: { address: "fd00:200::1", port: 0 } })).toThrow(/Cannot assign requested address/);
      const s1 = createSocket(nets.a, { family: 4, type: "tcp", bind: { address: "127.0.0.1", port: 15008 }, listen: { backlog: 4 } });
      try {
        const inUse = catchNative(() => createSocket(nets.a, { family: 4, type: "tcp", bind: { address: "127.0.0.1", port: 15008 } }));
        expect(inUse.message).toBe("bind 127.0.0.1:15008: Address already in use");
        // The same port in another netns is free: the socket was made where we asked.
        const s2 = createSocket(nets.b, { family: 4, type: "tcp", bind: { address: "127.0.0.1", port: 15008 }, listen: { backlog: 4 } });
        closeFd(s2);
      } finally {
        closeFd(s1);
      }
      expect(sameNetns(currentThreadNetns(), before)).toBe(true);
    });

    it("setns without CAP_SYS_ADMIN fails with an actionable message (child without capabilities)", async () => {
      const fixture = await compiledFixture("native-noperm");
      const out = await run("setpriv", ["--bounding-set=-all", "--inh-caps=-all", process.execPath, fixture, `/var/run/netns/${pod}`]);
      const r = JSON.parse(out.stdout.trim()) as { ok: boolean; name: string; code: string; syscall: string; errno: number; message: string };
      expect(r).toMatchObject({ ok: false, name: "NativeError", code: "EPERM", syscall: "setns", errno: 1 });
      expect(r.message).toMatch(/^setns into netns fd \d+: Operation not permitted — ztunnel needs CAP_SYS_ADMIN and CAP_NET_ADMIN$/);
    });
  });

  it("a failed switch back aborts the process instead of continuing in the pod's netns", async () => {
    // LD_PRELOAD shim: the second setns() (the switch back) fails.
    const dir = mkdtempSync(join(tmpdir(), "ambient-setns-"));
    try {
      writeFileSync(
        join(dir, "shim.c"),
        `#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
static int calls;
int setns(int fd, int nstype) {
  if (++calls == 2) { errno = EIO; return -1; }
  int (*real)(int, int) = (int (*)(int, int))dlsym(RTLD_NEXT, "setns");
  return real(fd, nstype);
}
`,
      );
      await run("gcc", ["-shared", "-fPIC", "-o", join(dir, "shim.so"), join(dir, "shim.c"), "-ldl"]);
      const fixture = await compiledFixture("native-noperm");
      // No core file from the expected abort (sh: ulimit -c 0, then exec node).
      const child = spawn("sh", ["-c", 'ulimit -c 0; exec "$0" "$@"', process.execPath, fixture, `/var/run/netns/${pod}`], {
        env: { ...process.env, LD_PRELOAD: join(dir, "shim.so") },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
        child.once("exit", (c, s) => resolve([c, s])),
      );
      expect(signal).toBe("SIGABRT");
      expect(code).toBeNull();
      expect(stdout).toBe(""); // it never got to report a socket
      expect(stderr).toMatch(/could not switch thread back to its own netns .*: Input\/output error; aborting/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("no fd leaks across create/close loops, including error paths", async () => {
    const baseline = openFds();
    for (let i = 0; i < 300; i++) {
      const h = NetnsHandle.open(`/var/run/netns/${pod}`);
      const d = h.dup();
      const fd = createSocket(d, { family: i % 2 ? 4 : 6, type: i % 3 ? "tcp" : "udp", mark: 0x539, reusePort: true });
      netnsCookieOf(h);
      closeFd(fd);
      expect(() => createSocket(h, { family: 4, type: "tcp", bind: { address: "10.200.0.1", port: 1 } })).toThrow(NativeError);
      expect(() => createSocket(h, { family: 4, type: "tcp", mark: 1, listen: { backlog: 1 }, bind: { address: "127.0.0.1", port: 0 }, keepAlive: { idleSec: 0, intervalSec: 1, count: 1 } })).toThrow(TypeError);
      expect(() => NetnsHandle.open("/etc/hostname")).toThrow(NativeError);
      expect(() => NetnsHandle.open(`/var/run/netns/nope-${id}`)).toThrow(NativeError);
      d.close();
      h.close();
    }
    expect(openFds()).toBe(baseline);
  });
});
