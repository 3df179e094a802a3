import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { unixRequest } from "../../cni-plugin/agent-client.js";
import { startPluginLogServer } from "../../src/agent/pluginevent/log-server.js";
import { startFakeAgent, type FakeAgent } from "../fixtures/cni-fake-agent.js";
import { useTempDirs } from "../fixtures/temp-dirs.js";

// The agent's side of the plugin protocol: HTTP over pluginevent.sock.
const tmp = useTempDirs("cni-pe-");

const ADD = '{"Netns":"/var/run/netns/x","PodName":"p","PodNamespace":"ns","IPs":[{"Interface":0,"Address":{"IP":"10.244.1.5","Mask":"////AA=="},"Gateway":"10.244.1.1"}]}';

describe("plugin event server", () => {
  let agent: FakeAgent | undefined;
  afterEach(async () => {
    await agent?.close();
    agent = undefined;
  });

  it("listens root-only on <run dir>/pluginevent.sock, replacing a stale socket", async () => {
    const runDir = join(tmp(), "run");
    agent = await startFakeAgent(runDir);
    expect(statSync(runDir).mode & 0o777).toBe(0o700);
    expect(statSync(agent.server.socketPath).mode & 0o777).toBe(0o600);
    await agent.close();
    writeFileSync(join(runDir, "pluginevent.sock"), "stale");
    agent = await startFakeAgent(runDir);
    expect(statSync(agent.server.socketPath).isSocket()).toBe(true);
  });

  it("answers 200 for enrolled and not-enrolled pods, 500 with the reason for refusals", async () => {
    const runDir = tmp();
    agent = await startFakeAgent(runDir);
    const sock = agent.server.socketPath;
    expect(await unixRequest(sock, "POST", "/cmdadd", ADD, 2000)).toEqual({ status: 200, body: '{"enrolled":true}' });
    expect(agent.adds).toEqual([
      { netns: "/var/run/netns/x", podName: "p", podNamespace: "ns", ips: [{ interface: 0, address: "10.244.1.5", prefixLength: 24, gateway: "10.244.1.1" }] },
    ]);
    agent.decide = () => ({ outcome: "not-enrolled", reason: "no label" });
    expect(await unixRequest(sock, "POST", "/cmdadd", ADD, 2000)).toEqual({ status: 200, body: '{"enrolled":false,"reason":"no label"}' });
    agent.decide = () => ({ outcome: "refused", reason: "ztunnel not connected" });
    expect(await unixRequest(sock, "POST", "/cmdadd", ADD, 2000)).toEqual({ status: 500, body: "ztunnel not connected\n" });
    agent.decide = () => Promise.reject(new Error("netns vanished"));
    const r = await unixRequest(sock, "POST", "/cmdadd", ADD, 2000);
    expect(r.status).toBe(500);
    expect(r.body).toContain("netns vanished");
  });

  it("answers 400 for a bad body without calling the handler", async () => {
    agent = await startFakeAgent(tmp());
    const sock = agent.server.socketPath;
    for (const body of ["", "{", '{"PodName":"p"}', '{"Netns":"/n","PodName":"p","IPs":[{"Address":{"IP":"1.2.3.4","Mask":"AP8A/w=="}}]}']) {
      const r = await unixRequest(sock, "POST", "/cmdadd", body, 2000);
      expect(r.status, body).toBe(400);
    }
    expect((await unixRequest(sock, "POST", "/cmdadd", `{"Netns":"${"x".repeat(70_000)}","PodName":"p"}`, 2000)).status).toBe(400);
    expect(agent.adds).toEqual([]);
  });

  it("takes DEL notifications and serves the STATUS probe", async () => {
    agent = await startFakeAgent(tmp());
    const sock = agent.server.socketPath;
    const del = await unixRequest(sock, "POST", "/cmddel", '{"ContainerID":"c1","Netns":"","PodName":"p","PodNamespace":""}', 2000);
    expect(del.status).toBe(200);
    expect(agent.dels).toEqual([{ containerId: "c1", netns: "", podName: "p", podNamespace: "" }]);
    expect((await unixRequest(sock, "POST", "/cmddel", "{}", 2000)).status).toBe(400);
    expect((await unixRequest(sock, "GET", "/healthz", undefined, 2000)).status).toBe(200);
    agent.notReady = "waiting for ztunnel";
    expect(await unixRequest(sock, "GET", "/healthz", undefined, 2000)).toEqual({ status: 503, body: "not ready: waiting for ztunnel\n" });
    expect((await unixRequest(sock, "GET", "/cmdadd", undefined, 2000)).status).toBe(405);
    expect((await unixRequest(sock, "GET", "/other", undefined, 2000)).status).toBe(404);
  });

  it("re-logs the plugin's log lines from log.sock", async () => {
    const runDir = tmp();
    const server = await startPluginLogServer(runDir);
    try {
      expect(statSync(server.socketPath).mode & 0o777).toBe(0o600);
      const lines = [JSON.stringify({ level: "info", msg: "hello", pod: "p" })];
      expect((await unixRequest(server.socketPath, "POST", "/log", JSON.stringify(lines), 2000)).status).toBe(200);
      expect((await unixRequest(server.socketPath, "POST", "/log", "{}", 2000)).status).toBe(400);
    } finally {
      await server.close();
    }
  });
});
