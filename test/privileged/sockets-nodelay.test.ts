import { spawn } from "node:child_process";
import { connect, type AddressInfo, type Server } from "node:net";
import { expect, it } from "vitest";
import { describePrivileged } from "../harness/privileged.js";
import { PlainSocketFactory } from "../../src/sockets/index.js";

// Every proxy listener (15001, 15006, 15008) is made by listenTcp; the sockets it accepts must
// carry TCP_NODELAY, or small HBONE frames wait on Nagle for the peer's ACK. Node cannot read
// the option back, so an independent peer does: Debian's python inherits the listening fd,
// accepts our connection itself and reports getsockopt(TCP_NODELAY) of the accepted socket.

const PY = String.raw`
import socket, sys
l = socket.socket(fileno=3)
l.setblocking(True)  # the inherited description is non-blocking (Node set it)
sys.stdout.write("ready\n"); sys.stdout.flush()
a, _ = l.accept()
sys.stdout.write("nodelay=%d\n" % a.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)); sys.stdout.flush()
a.close()
`;

function listenerFd(server: Server): number {
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new Error("listener has no fd");
  return fd;
}

describePrivileged("listeners made by the socket factory", () => {
  it("hand out accepted sockets with TCP_NODELAY set", async () => {
    const server = await new PlainSocketFactory().listenTcp({ address: "127.0.0.1", port: 0 });
    const { port } = server.address() as AddressInfo;
    // The child gets its own copy of the listening fd as fd 3; ours is closed right after, so
    // only the child accepts.
    const child = spawn("/usr/bin/python3", ["-c", PY], { stdio: ["ignore", "pipe", "pipe", listenerFd(server)] });
    try {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      let out = "";
      let err = "";
      const { stdout, stderr } = child;
      if (stdout === null || stderr === null) throw new Error("python has no stdout/stderr pipes");
      stderr.on("data", (d: Buffer) => (err += d.toString()));
      const reported = new Promise<string>((resolve, reject) => {
        stdout.on("data", (d: Buffer) => {
          out += d.toString();
          const m = /nodelay=(\d+)/.exec(out);
          if (m !== null) resolve(m[1]!);
        });
        child.once("exit", (code) => reject(new Error(`python exited ${code}: ${err}`)));
      });
      await new Promise<void>((resolve, reject) => {
        const t = setInterval(() => (out.includes("ready") ? (clearInterval(t), resolve()) : undefined), 10);
        child.once("exit", () => (clearInterval(t), reject(new Error(`python exited before accepting: ${err}`))));
      });
      const c = connect({ host: "127.0.0.1", port });
      c.on("error", () => undefined);
      try {
        expect(await reported).toBe("1");
      } finally {
        c.destroy();
      }
    } finally {
      child.kill("SIGKILL");
    }
  });
});
