import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeAddEvent,
  decodeDelEvent,
  encodeAddEvent,
  encodeDelEvent,
  podIpFromCidr,
  PluginEventDecodeError,
  type CmdAddEvent,
} from "../../src/cni-contract/index.js";

// The golden file is what Go's encoding/json makes of Istio's CNIPluginAddEvent for this
// input (net.IPNet → {"IP","Mask"(base64)}, nil net.IP → "", nil *int → null), written by hand.
const GOLDEN = join(import.meta.dirname, "..", "golden", "cni", "cmdadd-body.json");

const FIXED: CmdAddEvent = {
  netns: "/var/run/netns/cni-5f1c2b",
  podName: "reviews-v1-7d9f",
  podNamespace: "bookinfo",
  ips: [
    podIpFromCidr("10.244.1.5/24", 2, "10.244.1.1"),
    podIpFromCidr("fd00:10:244:1:0:0:0:5/64", 2, "fd00:10:244:1::1"),
    podIpFromCidr("10.0.0.7/32", null, null),
  ],
};

describe("CNI ADD event wire format", () => {
  it("matches Istio's JSON byte for byte", () => {
    expect(encodeAddEvent(FIXED)).toBe(readFileSync(GOLDEN, "utf8"));
  });

  it("encodes no IPs as null, like a nil Go slice", () => {
    expect(encodeAddEvent({ netns: "/n", podName: "p", podNamespace: "", ips: [] })).toBe(
      '{"Netns":"/n","PodName":"p","PodNamespace":"","IPs":null}',
    );
  });

  it("escapes <, > and & the way Go does", () => {
    expect(encodeAddEvent({ netns: "/a<b>&c", podName: "p", podNamespace: "n", ips: [] })).toContain(
      '"Netns":"/a\\u003cb\\u003e\\u0026c"',
    );
  });

  it("decodes the golden body back to the input", () => {
    const ev = decodeAddEvent(readFileSync(GOLDEN, "utf8"));
    expect(ev.podName).toBe("reviews-v1-7d9f");
    expect(ev.ips.map((i) => [i.interface, i.address, i.prefixLength, i.gateway])).toEqual([
      [2, "10.244.1.5", 24, "10.244.1.1"],
      [2, "fd00:10:244:1::5", 64, "fd00:10:244:1::1"],
      [null, "10.0.0.7", 32, null],
    ]);
  });

  it("accepts a 16-byte mask on an IPv4 address (Go's To16 form)", () => {
    const mask = Buffer.concat([Buffer.alloc(10), Buffer.from([255, 255, 255, 255, 255, 0])]).toString("base64");
    const ev = decodeAddEvent(`{"Netns":"/n","PodName":"p","IPs":[{"Interface":0,"Address":{"IP":"10.0.0.1","Mask":"${mask}"},"Gateway":""}]}`);
    expect(ev.ips[0]?.prefixLength).toBe(24);
  });

  it.each([
    ["not json", "{"],
    ["array", "[]"],
    ["no netns", '{"PodName":"p"}'],
    ["no pod name", '{"Netns":"/n"}'],
    ["ips not a list", '{"Netns":"/n","PodName":"p","IPs":{}}'],
    ["bad ip", '{"Netns":"/n","PodName":"p","IPs":[{"Address":{"IP":"x","Mask":"////AA=="}}]}'],
    ["non-contiguous mask", '{"Netns":"/n","PodName":"p","IPs":[{"Address":{"IP":"10.0.0.1","Mask":"/wD/AA=="}}]}'],
    ["bad gateway", '{"Netns":"/n","PodName":"p","IPs":[{"Address":{"IP":"10.0.0.1","Mask":"////AA=="},"Gateway":"nope"}]}'],
    ["negative interface", '{"Netns":"/n","PodName":"p","IPs":[{"Interface":-1,"Address":{"IP":"10.0.0.1","Mask":"////AA=="}}]}'],
  ])("rejects %s", (_name, body) => {
    expect(() => decodeAddEvent(body)).toThrow(PluginEventDecodeError);
  });

  it("round-trips any IPv4 event (property)", () => {
    const ip = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join("."));
    fc.assert(
      fc.property(fc.string(), fc.string({ minLength: 1 }), fc.string(), fc.array(fc.tuple(ip, fc.integer({ min: 0, max: 32 }), fc.option(fc.nat(5)))), (netns, name, ns, ips) => {
        const ev: CmdAddEvent = {
          netns: "/" + netns,
          podName: name,
          podNamespace: ns,
          ips: ips.map(([a, p, i]) => podIpFromCidr(`${a}/${p}`, i, null)),
        };
        expect(decodeAddEvent(encodeAddEvent(ev))).toEqual(ev);
      }),
    );
  });

  it("round-trips the DEL notification", () => {
    const ev = { containerId: "c1", netns: "", podName: "p", podNamespace: "" };
    expect(decodeDelEvent(encodeDelEvent(ev))).toEqual(ev);
    expect(() => decodeDelEvent('{"PodName":"p"}')).toThrow(/ContainerID/);
  });
});
