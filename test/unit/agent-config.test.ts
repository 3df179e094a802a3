import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { agentHelp, AGENT_ENV, agentUnknownVariables, loadAgentConfig } from "../../src/agent/config.js";
import { AgentConfigError } from "../../src/agent/errors.js";

describe("agent configuration from the environment", () => {
  it("defaults follow istio-cni for a Kubernetes node", () => {
    const c = loadAgentConfig({ NODE_NAME: "node-a" });
    expect(c).toMatchObject({
      zdsSocket: "/var/run/ztunnel/ztunnel.sock",
      runDir: "/var/run/istio-cni",
      cniNetDir: "/host/etc/cni/net.d",
      nodeName: "node-a",
      podNamespace: "istio-system",
      excludeNamespaces: ["kube-system"],
      dnsCapture: true,
      ipv6: true,
      inventoryPath: undefined,
      verifyIntervalMs: 5000,
      httpHost: "0.0.0.0",
      httpPort: 8000,
    });
  });

  it("reads every variable", () => {
    const c = loadAgentConfig({
      ZTUNNEL_UDS_ADDRESS: "/tmp/z/zt.sock",
      CNI_AGENT_RUN_DIR: "/tmp/run",
      MOUNTED_CNI_NET_DIR: "/tmp/net.d",
      CNI_CONF_NAME: "10-k.conflist",
      POD_NAMESPACE: "mesh-system",
      EXCLUDE_NAMESPACES: "kube-system, infra",
      AMBIENT_DNS_CAPTURE: "false",
      LOCAL_INVENTORY_PATH: "/tmp/inv.yaml",
      VERIFY_INTERVAL: "1.5s",
      AGENT_HTTP_ADDRESS: "127.0.0.1:0",
      KUBECONFIG: "/tmp/kc",
    });
    expect(c).toMatchObject({
      zdsSocket: "/tmp/z/zt.sock",
      runDir: "/tmp/run",
      cniNetDir: "/tmp/net.d",
      cniConfName: "10-k.conflist",
      podNamespace: "mesh-system",
      excludeNamespaces: ["kube-system", "infra"],
      dnsCapture: false,
      inventoryPath: "/tmp/inv.yaml",
      verifyIntervalMs: 1500,
      httpHost: "127.0.0.1",
      httpPort: 0,
      kubeconfig: "/tmp/kc",
      nodeName: "",
    });
  });

  it.each([
    ["AMBIENT_DNS_CAPTURE", "maybe"],
    ["VERIFY_INTERVAL", "10"],
    ["VERIFY_INTERVAL", "fast"],
    ["AGENT_HTTP_ADDRESS", "localhost:http"],
    ["AGENT_HTTP_ADDRESS", ":70000"],
    ["EXCLUDE_NAMESPACES", "kube-system,Bad_Name"],
    ["CNI_CONF_NAME", "../etc/x.conflist"],
    ["ZDS_ACK_TIMEOUT", "0"],
    ["VERIFY_PROXIES", "sometimes"],
  ])("%s=%s is an error naming the variable", (name, value) => {
    const env = { NODE_NAME: "n", [name]: value };
    expect(() => loadAgentConfig(env)).toThrow(AgentConfigError);
    expect(() => loadAgentConfig(env)).toThrow(name);
  });

  it("resolves relative paths against the working directory, as ztunnel does", () => {
    const c = loadAgentConfig({ NODE_NAME: "n", CNI_AGENT_RUN_DIR: "relative/run", ZTUNNEL_UDS_ADDRESS: "zt.sock" });
    expect(c.runDir).toBe(resolve("relative/run"));
    expect(c.zdsSocket).toBe(resolve("zt.sock"));
  });

  it("reads addresses and durations as ztunnel does", () => {
    expect(loadAgentConfig({ NODE_NAME: "n", AGENT_HTTP_ADDRESS: ":9000" })).toMatchObject({ httpHost: "0.0.0.0", httpPort: 9000 });
    expect(loadAgentConfig({ NODE_NAME: "n", AGENT_HTTP_ADDRESS: "[::1]:9000" })).toMatchObject({ httpHost: "::1", httpPort: 9000 });
    expect(loadAgentConfig({ NODE_NAME: "n", RECONCILE_MAX_BACKOFF: "1h30m" }).retryMaxBackoffMs).toBe(5_400_000);
  });

  it("a misspelled variable stops start-up with the name it meant", () => {
    const env = { NODE_NAME: "n", VERIFY_INTERVALL: "1s" };
    expect(() => loadAgentConfig(env)).toThrow(AgentConfigError);
    expect(() => loadAgentConfig(env)).toThrow(/VERIFY_INTERVALL.*did you mean VERIFY_INTERVAL\?/);
    expect(() => loadAgentConfig({ NODE_NAME: "n", ambient_ipv6: "false" })).toThrow(/did you mean AMBIENT_IPV6\?/);
  });

  it("reports variables with the agent's prefixes that nothing reads", () => {
    expect(agentUnknownVariables({ AMBIENT_SOMETHING_ELSE: "1", HOME: "/root", LOG_LEVEL: "info" })).toEqual(["AMBIENT_SOMETHING_ELSE"]);
  });

  it("--help lists every variable with its default", () => {
    const help = agentHelp();
    for (const name of Object.keys(AGENT_ENV)) expect(help).toContain(`  ${name}  (default: `);
    expect(help).toContain("AGENT_HTTP_ADDRESS  (default: 0.0.0.0:8000)");
    expect(help).toContain("VERIFY_INTERVAL  (default: 5s)");
  });

  it("needs NODE_NAME unless the node is cluster-free", () => {
    expect(() => loadAgentConfig({})).toThrow(/NODE_NAME is required/);
    expect(loadAgentConfig({ LOCAL_INVENTORY_PATH: "/x.yaml" }).nodeName).toBe("");
  });
});
