import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAddress, parseSs } from "../../src/ztunnel/admin/ss-parse.js";

// The kernel view of /listeners parses `ss -tanemoi`; samples captured from iproute2 6.1
// (v6: real capture; v4: a pod-like table with retransmits, timers and a scoped address).

const fixture = (name: string): string => readFileSync(join(import.meta.dirname, "..", "fixtures", name), "utf8");

describe("ss -tanemoi parser", () => {
  it("parses listeners and established sockets with mark, queues, skmem and TCP_INFO (v4 sample)", () => {
    const { sockets, skipped } = parseSs(fixture("ztunnel-ss-sample-v4.txt"));
    expect(skipped).toEqual([]);
    expect(sockets).toHaveLength(6);
    const listeners = sockets.filter((s) => s.state === "LISTEN" && s.local.port === 15001);
    expect(listeners).toHaveLength(2);
    expect(listeners.map((s) => s.mark)).toEqual([1337, 1337]);
    expect(listeners[0]?.sendQ).toBe(128);
    expect(listeners[0]?.peer).toEqual({ address: "0.0.0.0", port: undefined });
    expect(listeners[0]?.skmem).toMatchObject({ r: 0, rb: 131072, tb: 16384 });
    const dns = sockets.find((s) => s.local.port === 53);
    expect(dns?.local).toEqual({ address: "127.0.0.53", port: 53, scope: "lo" });
    expect(dns?.uid).toBe(101);
    expect(dns?.mark).toBeUndefined();
    const est = sockets.find((s) => s.state === "ESTAB");
    expect(est).toMatchObject({ recvQ: 0, sendQ: 86880, local: { address: "10.10.0.2", port: 15008 }, peer: { address: "10.10.1.2", port: 40112 } });
    expect(est?.rttMs).toBe(102.5);
    expect(est?.rttVarMs).toBe(40.25);
    expect(est?.retransmits).toBe(1);
    expect(est?.totalRetransmits).toBe(3);
    expect(est?.timer).toEqual({ name: "on", expires: "208ms", retransmits: 3 });
    expect(est?.bytesSent).toBe(9000);
    expect(est?.bytesAcked).toBe(4657);
    expect(est?.notSent).toBe(78192);
    expect(est?.cwnd).toBe(1);
    expect(est?.inode).toBe(52200);
    expect(est?.extra.send).toBe("113014bps");
    expect(est?.extra.sack).toBe("");
    const tw = sockets.find((s) => s.state === "TIME-WAIT");
    expect(tw?.timer?.name).toBe("timewait");
    expect(tw?.skmem).toBeUndefined();
    expect(sockets.find((s) => s.state === "SYN-SENT")?.peer.port).toBe(80);
  });

  it("parses IPv6 and wildcard addresses (v6 capture)", () => {
    const { sockets, skipped } = parseSs(fixture("ztunnel-ss-sample-v6.txt"));
    expect(skipped).toEqual([]);
    expect(sockets).toHaveLength(3);
    const l = sockets[0];
    expect(l?.local).toEqual({ address: "*", port: 45672 });
    expect(l?.peer).toEqual({ address: "*", port: undefined });
    expect(l?.mark).toBe(0x539);
    const [c, s] = [sockets[1], sockets[2]];
    expect(c?.local).toEqual({ address: "::1", port: 33094 });
    expect(c?.timer?.name).toBe("keepalive");
    expect(c?.mark).toBeUndefined();
    expect(s?.recvQ).toBe(1000);
    expect(s?.bytesReceived).toBe(1000);
    expect(typeof s?.rttMs).toBe("number");
  });

  it("skips lines it cannot read instead of failing, and tolerates unknown tokens", () => {
    const text = ["State Recv-Q Send-Q Local Address:Port Peer Address:Port Process", "garbage line", "ESTAB 0 0 10.0.0.1:1 10.0.0.2:2 newfield:xyz <->", "\t brand_new:(a,b) rtt:abc"].join("\n");
    const { sockets, skipped } = parseSs(text);
    expect(skipped).toEqual(["garbage line"]);
    expect(sockets).toHaveLength(1);
    expect(sockets[0]?.extra.newfield).toBe("xyz");
    expect(sockets[0]?.extra.brand_new).toBe("(a,b)");
    expect(sockets[0]?.rttMs).toBeUndefined();
  });

  it("addresses: brackets, scope, wildcard port, and invalid ones", () => {
    expect(parseAddress("[fd00::1]:8080")).toEqual({ address: "fd00::1", port: 8080 });
    expect(parseAddress("[fe80::1%eth0]:22")).toEqual({ address: "fe80::1", port: 22, scope: "eth0" });
    expect(parseAddress("10.0.0.1:99999")).toBeUndefined();
    expect(parseAddress("nocolon")).toBeUndefined();
  });
});
