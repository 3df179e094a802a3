import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolveContext } from "../../src/cli/context.js";
import { metricTotals, parseConfigDump } from "../../src/cli/dump.js";
import { parseFormat, render, table } from "../../src/cli/format.js";
import { cli } from "../fixtures/cli-run.js";

describe("ambientctl output and arguments", () => {
  it("tables: upper-case headers, columns aligned with two spaces, no trailing blanks", () => {
    expect(table(["name", "ip"], [["a", "10.0.0.1"], ["long-name", "::1"]])).toBe("NAME       IP\na          10.0.0.1\nlong-name  ::1\n");
    expect(render("json", [{ a: 1 }], () => "t")).toBe('[\n  {\n    "a": 1\n  }\n]\n');
    expect(render("yaml", [{ a: 1 }], () => "t")).toBe("- a: 1\n");
    expect(() => parseFormat("xml")).toThrow(/use table, json or yaml/);
  });

  it("reads ztunnel's config_dump leniently (unknown fields ignored, missing ones defaulted)", () => {
    const d = parseConfigDump({
      config: { nodeName: "node0", trustDomain: "cluster.local" },
      zds: { connected: true },
      workloads: [{ uid: "u1", name: "a", namespace: "ns", serviceAccount: "sa", workloadIps: ["10.0.0.1"], protocol: "HBONE", node: "node0", extra: 1 }],
      workloadState: { u1: { state: "Up", name: "a", namespace: "ns", identity: "spiffe://cluster.local/ns/ns/sa/sa", listeners: [{ address: "0.0.0.0", port: 15008, protocol: "HBONE", role: "inbound-hbone", worker: 1, mark: 1337, active: 2 }], connections: [{ worker: 1, listener: "inbound-hbone" }, { worker: 1, listener: "inbound-hbone" }, { worker: 0, listener: "outbound" }] } },
      certificates: [{ identity: "spiffe://x", notBefore: "a", notAfter: "b" }],
      counters: { inbound: { opened: 3, closed: 2 } },
      future: { x: 1 },
    });
    expect(d.zdsConnected).toBe(true);
    expect(d.pods[0]?.listeners[0]).toEqual({ address: "0.0.0.0", port: 15008, protocol: "HBONE", role: "inbound-hbone", worker: 1, mark: 1337, connections: 2 });
    expect([...(d.pods[0]?.openByListener ?? [])]).toEqual([["1/inbound-hbone", 2], ["0/outbound", 1]]);
    expect(d.counters.inbound).toEqual({ opened: 3, closed: 2, failed: 0, bytesSent: 0, bytesReceived: 0 });
    expect(parseConfigDump(null).pods).toEqual([]);
  });

  it("sums Prometheus series over label sets", () => {
    const text = '# HELP x\nistio_tcp_sent_bytes_total{a="1"} 10\nistio_tcp_sent_bytes_total{a="2"} 5\nother 3\n';
    expect(metricTotals(text, ["istio_tcp_sent_bytes_total", "missing"])).toEqual({ istio_tcp_sent_bytes_total: 15, missing: 0 });
  });

  it("targets: flags over env over defaults; a context file lists several nodes; --node picks one", () => {
    expect(resolveContext({}, {}).nodes[0]).toMatchObject({ name: "local", ztunnelAdmin: "http://127.0.0.1:15000", agent: "http://127.0.0.1:8000", netns: undefined });
    expect(resolveContext({ admin: "10.0.0.1:16000" }, { AMBIENTCTL_NETNS: "n0" }).nodes[0]).toMatchObject({ name: "n0", netns: "n0", ztunnelAdmin: "http://10.0.0.1:16000", ztunnelReadiness: "http://10.0.0.1:15021" });
    const dir = mkdtempSync(join(tmpdir(), "cli-ctx-"));
    try {
      const path = join(dir, "ctx.yaml");
      writeFileSync(path, JSON.stringify({ nodes: [{ name: "a", netns: "x-a", agent: "127.0.0.1:15990" }, { name: "b", netns: "x-b" }], localConfig: "/l.yaml" }));
      const ctx = resolveContext({ context: path }, {});
      expect(ctx.nodes.map((n) => [n.name, n.netns, n.agent])).toEqual([["a", "x-a", "http://127.0.0.1:15990"], ["b", "x-b", "http://127.0.0.1:8000"]]);
      expect(ctx.localConfig).toBe("/l.yaml");
      expect(resolveContext({ node: "b" }, { AMBIENTCTL_CONTEXT: path }).nodes.map((n) => n.name)).toEqual(["b"]);
      expect(() => resolveContext({ context: path, node: "c" }, {})).toThrow(/no node "c" \(known: a, b\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(() => resolveContext({ admin: "ftp://x:1" }, {})).toThrow(/only http/);
  });

  it("exit codes: 2 for usage errors, 0 for --help, 3 when nothing answers", async () => {
    expect((await cli([])).code).toBe(2);
    expect((await cli(["frobnicate"])).err).toContain('unknown command "frobnicate"');
    expect((await cli(["status", "--bogus"])).code).toBe(2);
    expect((await cli(["listeners", "not-a-pod"])).code).toBe(2);
    expect((await cli(["workloads", "extra"])).code).toBe(2);
    expect((await cli(["status", "-o", "xml"])).code).toBe(2);
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toContain("exit codes: 0 ok, 1 failed or unhealthy, 2 usage, 3 unreachable");
    // Port 1 on loopback: nothing listens there.
    const r = await cli(["workloads", "--admin", "127.0.0.1:1"]);
    expect(r.code).toBe(3);
    expect(r.err).toContain("http://127.0.0.1:1/config_dump");
  });
});
