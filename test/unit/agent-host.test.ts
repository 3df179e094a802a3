import { request } from "node:http";
import { describe, expect, it } from "vitest";
import { startHealthServer } from "../../src/agent/health/server.js";
import { HOST_CHAIN, PROBE_SET_V4, ProbeSnat } from "../../src/agent/hostrules/probe-snat.js";
import { AgentMetrics } from "../../src/agent/metrics/metrics.js";
import type { CommandRunner } from "../../src/agent/redirect/index.js";

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request({ host: "127.0.0.1", port, path }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on("error", reject)
      .end();
  });
}

/** A node netns stand-in: remembers which rules exist so -C answers like iptables. */
function fakeNode(): CommandRunner & { calls: string[]; rules: Set<string> } {
  const calls: string[] = [];
  const rules = new Set<string>();
  return {
    where: "node",
    calls,
    rules,
    async run(cmd, args) {
      const line = [cmd, ...args].join(" ");
      calls.push(line);
      const i = args.indexOf("-C") >= 0 ? args.indexOf("-C") : args.indexOf("-A");
      if (i >= 0) {
        const key = `${cmd} ${args.slice(i + 1).join(" ")}`;
        if (args[i] === "-C") return { code: rules.has(key) ? 0 : 1, stdout: "", stderr: "" };
        rules.add(key);
      }
      if (args.includes("-N") && calls.filter((c) => c === line).length > 1) return { code: 1, stdout: "", stderr: "iptables: Chain already exists." };
      return { code: 0, stdout: "", stderr: "" };
    },
  };
}

describe("probe SNAT on the node", () => {
  it("creates the set, chain, jump and rule once; pods are ipset members", async () => {
    const node = fakeNode();
    const snat = new ProbeSnat(node, { ipv6: false, probeAddress: "169.254.7.127", probeAddress6: "fd16::1", variant: "nft" });
    await snat.ensure();
    await snat.ensure();
    expect(node.calls.filter((c) => c.includes(" -A "))).toEqual([
      `iptables-nft -w -t nat -A POSTROUTING -j ${HOST_CHAIN}`,
      `iptables-nft -w -t nat -A ${HOST_CHAIN} -m owner --socket-exists -p tcp -m set --match-set ${PROBE_SET_V4} dst -j SNAT --to-source 169.254.7.127`,
    ]);
    node.calls.length = 0;
    await snat.addPod(["10.0.0.5", "fd00::5"]); // IPv6 off: the v6 address is skipped
    await snat.removePod(["10.0.0.5"]);
    expect(node.calls).toEqual([`ipset add ${PROBE_SET_V4} 10.0.0.5 -exist`, `ipset del ${PROBE_SET_V4} 10.0.0.5 -exist`]);
  });

  it("reports a failing command with the fix to try", async () => {
    const snat = new ProbeSnat({ where: "node", run: async () => ({ code: 2, stdout: "", stderr: "ipset: command not found" }) }, { ipv6: false, probeAddress: "169.254.7.127", probeAddress6: "fd16::1", variant: "nft" });
    await expect(snat.ensure()).rejects.toThrow(/ipset create .* failed in node .*NET_ADMIN/);
  });
});

describe("agent health and metrics endpoints", () => {
  it("serves /healthz, /readyz naming what is pending, and /metrics with the agent's series", async () => {
    const metrics = new AgentMetrics();
    let pending = ["initial enrollment pass not done"];
    const hs = await startHealthServer({ host: "127.0.0.1", port: 0, registry: metrics.registry, pending: () => pending });
    try {
      expect(await get(hs.port, "/healthz")).toEqual({ status: 200, body: "ok\n" });
      expect(await get(hs.port, "/readyz")).toEqual({ status: 503, body: "not ready:\n- initial enrollment pass not done\n" });
      pending = [];
      expect((await get(hs.port, "/readyz")).status).toBe(200);
      metrics.ztunnelConnected.set(1);
      metrics.pluginRequests.inc({ type: "add", code: "200" });
      metrics.pluginRequests.inc({ type: "add", code: "500" });
      metrics.reconciles.inc({ result: "success" });
      const m = await get(hs.port, "/metrics");
      expect(m.status).toBe(200);
      expect(m.body).toContain("ztunnel_connected 1");
      expect(m.body).toContain('cni_plugin_requests_total{type="add",code="500"} 1');
      expect(m.body).toContain('enrollment_reconciles_total{result="success"} 1');
      expect((await get(hs.port, "/nope")).status).toBe(404);
    } finally {
      await hs.close();
    }
  });
});
