import type { Server, Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { execIn } from "../harness/netns.js";
import { useNetnsPair } from "../fixtures/netns-pair.js";
import { readAll } from "../fixtures/socket-io.js";
import { describePrivileged } from "../harness/privileged.js";
import { NativeError, originalDst, type OriginalDst } from "../../src/native/index.js";
import { InPodSocketFactory } from "../../src/sockets/index.js";

function fdOf(x: Socket): number {
  const fd = (x as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new Error("no fd on this socket");
  return fd;
}

/** A listener that answers every connection with its SO_ORIGINAL_DST (or the error) as JSON. */
async function origDstServer(factory: InPodSocketFactory, address: string, port: number): Promise<Server> {
  const server = await factory.listenTcp({ address, port });
  server.on("connection", (s: Socket) => {
    let body: string;
    try {
      body = JSON.stringify(originalDst(fdOf(s)));
    } catch (err) {
      const e = err as NativeError;
      body = JSON.stringify({ error: e.code, message: e.message });
    }
    s.end(body);
  });
  return server;
}

async function ask(factory: InPodSocketFactory, host: string, port: number): Promise<OriginalDst & { error?: string; message?: string }> {
  const sock = factory.connectTcp({ host, port });
  const text = (await readAll(sock)).toString();
  sock.destroy();
  return JSON.parse(text) as OriginalDst;
}

describePrivileged("SO_ORIGINAL_DST after an iptables REDIRECT", () => {
  const nets = useNetnsPair(["nod-p", "nod-b"]);
  const [pod] = nets.names;
  let ipv6Nat = true;
  const servers: Server[] = [];

  beforeAll(async () => {
    // Destinations that exist only as routes: the REDIRECT in nat OUTPUT rewrites them.
    // (A veth pair with both ends in the pod: this kernel has no dummy links.)
    await execIn(pod, "ip", ["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    await execIn(pod, "ip", ["link", "set", "d0", "up"]);
    await execIn(pod, "ip", ["link", "set", "d1", "up"]);
    await execIn(pod, "ip", ["addr", "add", "10.99.0.2/24", "dev", "d0"]);
    await execIn(pod, "ip", ["-6", "addr", "add", "fd99::2/64", "dev", "d0", "nodad"]);
    const nat = ["-t", "nat", "-A", "OUTPUT", "-p", "tcp"];
    await execIn(pod, "iptables", [...nat, "-d", "10.99.0.1", "--dport", "80", "-j", "REDIRECT", "--to-ports", "15002"]);
    await execIn(pod, "iptables", [...nat, "-d", "10.99.0.1", "--dport", "81", "-j", "REDIRECT", "--to-ports", "15001"]);
    try {
      await execIn(pod, "ip6tables", [...nat, "-d", "fd99::1", "--dport", "80", "-j", "REDIRECT", "--to-ports", "15001"]);
    } catch {
      ipv6Nat = false;
    }
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    // Deleting the pod netns (the pair's hook) takes its iptables rules and the veth pair with it.
  });

  it("IPv4: returns the pre-REDIRECT destination", async () => {
    const factory = new InPodSocketFactory(nets.a, { mark: 0x539, reusePort: true });
    servers.push(await origDstServer(factory, "0.0.0.0", 15002));
    expect(await ask(factory, "10.99.0.1", 80)).toEqual({ address: "10.99.0.1", port: 80, family: 4 });
  });

  it("IPv6 (when ip6tables nat works) and IPv4 on a dual-stack listener", async () => {
    const factory = new InPodSocketFactory(nets.a, { mark: 0x539, reusePort: true });
    servers.push(await origDstServer(factory, "::", 15001));
    // An IPv4 connection on a dual-stack socket is v4-mapped and tracked by IPv4 conntrack.
    expect(await ask(factory, "10.99.0.1", 81)).toEqual({ address: "10.99.0.1", port: 81, family: 4 });
    if (ipv6Nat) {
      expect(await ask(factory, "fd99::1", 80)).toEqual({ address: "fd99::1", port: 80, family: 6 });
    } else {
      console.warn("ip6tables nat unavailable here: IPv6 SO_ORIGINAL_DST not exercised");
    }
  });

  it("without conntrack in the netns it fails with a clear error", async () => {
    const factory = new InPodSocketFactory(nets.b, { mark: 0x539, reusePort: false });
    servers.push(await origDstServer(factory, "127.0.0.1", 15003));
    const r = await ask(factory, "127.0.0.1", 15003);
    expect(r.error).toBe("ENOENT");
    expect(r.message).toMatch(/^getsockopt SO_ORIGINAL_DST \(IPv4\) fd \d+: No such file or directory — no conntrack entry/);
  });
});
