import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseInventory } from "../../src/agent/enroll/inventory.js";
import type { Server, Socket } from "node:net";
import { NetnsHandle } from "../../src/native/index.js";
import { NativeSocketFactory } from "../../src/sockets/index.js";
import { parseLocalConfig } from "../../src/ztunnel/state/local-config.js";
import { describePrivileged } from "../harness/privileged.js";
import { FakeKubeServer, writeKubeconfig } from "../harness/fake-kube/index.js";
import type { Duplex } from "node:stream";

// ambientctl (compiled, as a user runs it) against a running local mesh: the demo kept with
// --keep (2 nodes, an agent and a ztunnel each, 4 enrolled pods), then torn down with --down.

const ROOT = join(import.meta.dirname, "..", "..");
const DEMO = join(ROOT, "dist", "src", "demo", "main.js");
const CLI = join(ROOT, "dist", "src", "cli", "main.js");

interface CliResult {
  code: number;
  out: string;
  err: string;
}

function ctl(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, HOME: "/nonexistent", KUBECONFIG: "" }, timeout: 30_000 }, (err, out, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : -1, out, err: stderr });
    });
  });
}

describePrivileged("ambientctl against a running local mesh", () => {
  let root: string;
  let ctx: string;
  let keepOut = "";
  let id = "";

  beforeAll(() => {
    if (!existsSync(DEMO) || !existsSync(CLI)) {
      try {
        execFileSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: "ignore" });
      } catch {
        // tsc writes its output even when a file elsewhere has type errors
      }
    }
    root = mkdtempSync(join(tmpdir(), "cli-mesh-"));
    keepOut = execFileSync(process.execPath, [DEMO, "--keep"], { env: { ...process.env, AMBIENT_DEMO_ROOT: root }, encoding: "utf8", timeout: 90_000 });
    id = /ambient mesh demo ([0-9a-f]{6})/.exec(keepOut)?.[1] ?? "";
    ctx = join(root, id, "context.yaml");
    expect(existsSync(ctx)).toBe(true);
  }, 120_000);

  afterAll(() => {
    try {
      if (root !== undefined) execFileSync(process.execPath, [DEMO, "--down"], { env: { ...process.env, AMBIENT_DEMO_ROOT: root }, stdio: "ignore", timeout: 60_000 });
    } finally {
      if (root !== undefined) rmSync(root, { recursive: true, force: true });
    }
  }, 90_000);

  it("the kept demo tells the user how to inspect it and how to tear it down", () => {
    expect(keepOut).toContain(`--context ${ctx} status`);
    expect(keepOut).toMatch(/ip netns exec ad-[0-9a-f]{6}-n0p1 ss -tlnp/);
    expect(keepOut).toContain("npm run demo -- --down");
  });

  it("status: agents healthy and connected, ztunnels ready, ZDS connected, no pending pods (exit 0)", async () => {
    const r = await ctl(["--context", ctx, "status", "-o", "json"]);
    expect(r.code, r.err).toBe(0);
    const rows = JSON.parse(r.out) as Array<Record<string, unknown>>;
    expect(rows.map((x) => x.node)).toEqual(["node0", "node1"]);
    for (const x of rows) expect(x).toMatchObject({ agentHealthy: true, agentReady: true, agentZtunnelConnected: true, agentPendingPods: 0, ztunnelReady: true, zdsConnected: true, pods: { up: 2, pending: 0 }, errors: [] });
    const table = await ctl(["--context", ctx, "status"]);
    expect(table.out).toMatch(/^NODE\s+AGENT HEALTHY/);
    expect(table.out).toMatch(/node1\s+yes\s+yes\s+yes\s+0\s+yes\s+yes\s+2\s+0/);
    // Pod start latency (issue 21 item 4): each node's two pods went CNI ADD → ztunnel ack.
    for (const x of rows) expect(x.podReady).toMatchObject({ count: 2, p50: expect.any(Number), p99: expect.any(Number) });
    expect(table.out).toMatch(/^node0: pod start \(CNI ADD → ztunnel ack\): p50 \d+ms p99 \d+ms over 2 pods$/m);
  });

  it("workloads: the six pods, demo ones HBONE and Up in their node's ztunnel, legacy ones TCP", async () => {
    const r = await ctl(["--context", ctx, "workloads", "-o", "json"]);
    expect(r.code, r.err).toBe(0);
    const rows = JSON.parse(r.out) as Array<{ node: string; namespace: string; name: string; protocol: string; captured: string }>;
    const seen = rows.map((w) => `${w.node} ${w.namespace}/${w.name} ${w.protocol} ${w.captured || "-"}`);
    expect(seen).toEqual([
      "node0 demo/frontend-0 HBONE Up",
      "node0 demo/backend-0 HBONE Up",
      "node0 legacy/legacy-0 TCP -",
      "node1 demo/frontend-1 HBONE Up",
      "node1 demo/backend-1 HBONE Up",
      "node1 legacy/legacy-1 TCP -",
    ]);
  });

  it("listeners <ns>/<pod>: three ports on each of the two workers, marked 0x539, and the pod's kernel view", async () => {
    const r = await ctl(["--context", ctx, "listeners", "demo/backend-1", "-o", "json"]);
    expect(r.code, r.err).toBe(0);
    const data = JSON.parse(r.out) as { listeners: Array<{ node: string; worker: number; address: string; mark: string }>; kernel?: Record<string, unknown> };
    const proxy = data.listeners.filter((l) => !l.address.endsWith(":15053"));
    expect(proxy.map((l) => `${l.node} w${l.worker} ${l.address} ${l.mark}`).sort()).toEqual(
      ["15001", "15006", "15008"].flatMap((p) => [0, 1].map((w) => `node1 w${w} 0.0.0.0:${p} 0x539`)).sort(),
    );
    // The DNS proxy: UDP and TCP on the pod's loopback, on both workers, marked too.
    const dns = data.listeners.filter((l) => l.address === "127.0.0.1:15053");
    expect(dns.map((l) => `w${l.worker} ${l.mark}`).sort()).toEqual(["w0 0x539", "w0 0x539", "w1 0x539", "w1 0x539"]);
    const table = await ctl(["--context", ctx, "listeners", "demo/backend-1"]);
    expect(table.out).toMatch(/node1\s+demo\s+backend-1\s+Up\s+0\s+inbound-hbone\s+0\.0\.0\.0:15008\s+HBONE\s+0x539/);
    // ztunnel's /listeners?pod=: the kernel's own socket table of the pod shows the marked listeners.
    expect(data.kernel?.["node1:demo/backend-1"]).toBeDefined();
    expect(table.out).toContain("kernel view of node1:demo/backend-1");
    expect(table.out).toMatch(/LISTEN\s+0\.0\.0\.0:15008\s+\S+\s+0x539/);
    expect(table.out).toMatch(/STATE\s+LOCAL\s+PEER\s+MARK\s+RECV-Q\s+SEND-Q\s+RTT\s+RETRANS/);
    // What `ss` in the pod netns shows agrees: the three ports are listening there.
    const ss = execFileSync("ip", ["netns", "exec", `ad-${id}-n1p1`, "ss", "-Htln"], { encoding: "utf8" });
    for (const p of ["15001", "15006", "15008"]) expect(ss).toContain(`0.0.0.0:${p}`);
  });

  it("listeners count a live connection on the listener that carries it: outbound on the client's node, HBONE inbound on the server's", async () => {
    const w = JSON.parse((await ctl(["--context", ctx, "workloads", "-o", "json"])).out) as Array<{ name: string; ips: string[] }>;
    const backendIp = w.find((x) => x.name === "backend-0")?.ips[0] ?? "";
    const handles = [NetnsHandle.open(`/var/run/netns/ad-${id}-n0p1`), NetnsHandle.open(`/var/run/netns/ad-${id}-n1p0`)] as const;
    const factory = (h: NetnsHandle): NativeSocketFactory => new NativeSocketFactory({ netns: h, mark: undefined, reusePort: false, spoofSource: false });
    let server: Server | undefined;
    let client: Socket | undefined;
    const accepted: Socket[] = [];
    try {
      server = await factory(handles[0]).listenTcp({ address: "0.0.0.0", port: 8080 });
      server.on("connection", (c: Socket) => accepted.push(c));
      client = factory(handles[1]).connectTcp({ host: backendIp, port: 8080 });
      client.on("error", () => undefined);
      await expect.poll(() => accepted.length, { timeout: 10_000 }).toBe(1);
      const open = async (pod: string, role: string): Promise<number> => {
        const r = await ctl(["--context", ctx, "listeners", pod, "-o", "json"]);
        const rows = (JSON.parse(r.out) as { listeners: Array<{ role: string; connections: number | null }> }).listeners;
        return rows.filter((x) => x.role === role).reduce((n, x) => n + (x.connections ?? 0), 0);
      };
      await expect.poll(() => open("demo/backend-0", "inbound-hbone"), { timeout: 10_000, interval: 300 }).toBe(1);
      expect(await open("demo/frontend-1", "outbound")).toBe(1);
      expect(await open("demo/backend-0", "inbound-plaintext")).toBe(0);
      // ztunnel-config connections: the same connection, from both ends, with the client's identity inbound.
      const conns = JSON.parse((await ctl(["--context", ctx, "ztunnel-config", "connections", "-o", "json"])).out) as Array<Record<string, unknown>>;
      expect(conns).toContainEqual(expect.objectContaining({ node: "node0", pod: "demo/backend-0", direction: "inbound", listener: "inbound-hbone", sourceIdentity: expect.stringContaining("/sa/frontend") }));
      expect(conns).toContainEqual(expect.objectContaining({ node: "node1", pod: "demo/frontend-1", direction: "outbound" }));
    } finally {
      client?.destroy();
      for (const a of accepted) a.destroy();
      await new Promise<void>((r) => (server !== undefined ? server.close(() => r()) : r()));
      for (const h of handles) h.close();
    }
  });

  it("ztunnel-config as istioctl's: workloads, services, policies (the demo's deny policy), certificates, all, and the log level", async () => {
    const zc = async (...a: string[]): Promise<CliResult> => await ctl(["--context", ctx, "ztunnel-config", ...a]);
    const w = await zc("workloads", "-o", "json");
    expect(w.code, w.err).toBe(0);
    expect(JSON.parse(w.out)).toEqual(JSON.parse((await ctl(["--context", ctx, "workloads", "-o", "json"])).out));
    expect(JSON.parse((await zc("services", "-o", "json")).out)).toEqual(
      ["node0", "node1"].map((node) => ({ node, namespace: "demo", name: "backend", hostname: "backend.demo.svc.cluster.local", vips: ["10.96.0.10"], ports: ["8080→8080"], waypoint: "None" })),
    );
    const pol = JSON.parse((await zc("policies", "-o", "json")).out) as Array<Record<string, unknown>>;
    expect(pol).toEqual(["node0", "node1"].map((node) => ({ node, namespace: "demo", name: "deny-frontend", scope: "WorkloadSelector", action: "Deny", rules: 1, dryRun: false })));
    expect((await zc("policies")).out).toMatch(/node1\s+demo\s+deny-frontend\s+Deny\s+WorkloadSelector\s+1\s+no/);
    expect(JSON.parse((await zc("certs", "-o", "json")).out)).toEqual(JSON.parse((await ctl(["--context", ctx, "certificates", "-o", "json"])).out));
    const all = await zc("all", "-o", "json");
    expect(Object.keys(JSON.parse(all.out) as object)).toEqual(["workloads", "services", "policies", "certificates", "connections"]);
    expect((await zc("all")).out).toMatch(/^WORKLOADS\n[\s\S]*\nPOLICIES\n[\s\S]*deny-frontend/);
    expect(JSON.parse((await zc("log", "-o", "json")).out)).toEqual([{ node: "node0", level: "info" }, { node: "node1", level: "info" }]);
    expect((await ctl(["--context", ctx, "--node", "node1", "ztunnel-config", "log", "debug"])).code).toBe(0);
    expect(JSON.parse((await zc("log", "-o", "json")).out)).toEqual([{ node: "node0", level: "info" }, { node: "node1", level: "debug" }]);
    expect((await ctl(["--context", ctx, "--node", "node1", "ztunnel-config", "log", "info"])).code).toBe(0);
    const bad = await zc("log", "loud");
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/loud/);
    const unknown = await zc("clusters");
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/unknown type "clusters" \(one of workloads, services, policies, certificates, connections, all, log\)/);
  });

  it("--kubeconfig: each node's ztunnel and agent pod found through the API server, reached by port-forward (WebSocket)", async () => {
    // The "kubelet" of the fake API server dials the pod's port inside the node's netns.
    const netnsOf = (pod: string): string => `/var/run/netns/ad-${id}-n${pod.endsWith("node1") ? 1 : 0}`;
    const handles: NetnsHandle[] = [];
    const dial = async (_ns: string, pod: string, port: number): Promise<Duplex> => {
      const h = NetnsHandle.open(netnsOf(pod));
      handles.push(h);
      const sock = new NativeSocketFactory({ netns: h, mark: undefined, reusePort: false, spoofSource: false }).connectTcp({ host: "127.0.0.1", port });
      await new Promise<void>((resolve, reject) => {
        sock.once("connect", () => resolve());
        sock.once("error", reject);
      });
      return sock;
    };
    const kube = await FakeKubeServer.start({ portForward: dial });
    try {
      for (const n of ["node0", "node1"]) {
        kube.store.create("pods", { metadata: { name: `ztunnel-${n}`, namespace: "istio-system", labels: { app: "ztunnel" } }, spec: { nodeName: n, containers: [{ name: "ztunnel", image: "x" }] }, status: { phase: "Running" } });
        kube.store.create("pods", {
          metadata: { name: `istio-cni-node-${n}`, namespace: "istio-system", labels: { "k8s-app": "istio-cni-node" } },
          spec: { nodeName: n, hostNetwork: true, containers: [{ name: "cni-agent", image: "x", ports: [{ name: "http-monitoring", containerPort: 15990 }] }] },
          status: { phase: "Running" },
        });
      }
      const kc = await writeKubeconfig({ url: kube.url, token: kube.token }, join(root, "kubeconfig"));
      const viaKube = await ctl(["--kubeconfig", kc, "ztunnel-config", "workloads", "-o", "json"]);
      expect(viaKube.code, viaKube.err).toBe(0);
      expect(JSON.parse(viaKube.out)).toEqual(JSON.parse((await ctl(["--context", ctx, "workloads", "-o", "json"])).out));
      const st = await ctl(["--kubeconfig", kc, "--node", "node1", "status", "-o", "json"]);
      expect(st.code, st.err).toBe(0);
      expect(JSON.parse(st.out)).toEqual([expect.objectContaining({ node: "node1", agentHealthy: true, ztunnelReady: true, zdsConnected: true, pods: { up: 2, pending: 0 } })]);
      // The requests were pods/portforward on the named pods (RBAC: create on pods/portforward).
      const pf = kube.requests.filter((r) => r.subresource === "portforward");
      expect(pf.length).toBeGreaterThan(0);
      expect(new Set(pf.map((r) => `${r.verb} ${r.namespace}/${r.name}:${r.query.ports}`))).toContain("create istio-system/ztunnel-node1:15000");
      expect(pf.filter((r) => r.name === "istio-cni-node-node1").map((r) => r.query.ports)).toContain("15990");
      const none = await ctl(["--kubeconfig", kc, "--node", "node7", "workloads"]);
      expect(none.code).toBe(1);
      expect(none.err).toMatch(/no running ztunnel pod \(label app=ztunnel\) on node node7/);
    } finally {
      await kube.stop();
      for (const h of handles) h.close();
    }
  });

  it("listeners of a pod no ztunnel serves fail with exit 1 and a hint", async () => {
    const r = await ctl(["--context", ctx, "listeners", "legacy/legacy-0"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("no ztunnel serves pod legacy/legacy-0");
  });

  it("one node by --netns (no context): only that node's pods and certificates", async () => {
    const r = await ctl(["--netns", `ad-${id}-n0`, "certificates", "-o", "yaml"]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("identity: spiffe://cluster.local/ns/demo/sa/frontend");
    expect(r.out).toContain("identity: spiffe://cluster.local/ns/demo/sa/backend");
    expect(r.out).toContain("valid: true");
    const l = await ctl(["--netns", `ad-${id}-n0`, "listeners", "-o", "json"]);
    const pods = new Set((JSON.parse(l.out) as { listeners: Array<{ pod: string }> }).listeners.map((x) => x.pod));
    expect([...pods].sort()).toEqual(["backend-0", "frontend-0"]);
  });

  it("unreachable endpoints exit 3 and say where they looked", async () => {
    const wrongPort = await ctl(["--netns", `ad-${id}-n0`, "--admin", "127.0.0.1:15999", "workloads"]);
    expect(wrongPort.code).toBe(3);
    expect(wrongPort.err).toContain(`in netns ad-${id}-n0`);
    // Without --netns the node's loopback is not this netns's loopback.
    const st = await ctl(["--agent", "127.0.0.1:1", "--admin", "127.0.0.1:2", "status"]);
    expect(st.code).toBe(3);
    const missing = await ctl(["--netns", "no-such-netns-x", "status"]);
    expect(missing.code).toBe(3);
    expect(missing.out + missing.err).toContain("cannot open netns no-such-netns-x");
  });

  it("enroll/unenroll through the context edit every node's inventory and the local config; the mesh stays healthy", async () => {
    const inv = (n: number): string => join(root, id, `node${n}`, "inventory.yaml");
    const cfg = join(root, id, "local-config.yaml");
    const before = readFileSync(cfg, "utf8");
    const on = await ctl(["--context", ctx, "enroll", "legacy"]);
    expect(on.code, on.err).toBe(0);
    for (const n of [0, 1]) expect(parseInventory(readFileSync(inv(n), "utf8")).namespaces.get("legacy")?.["istio.io/dataplane-mode"]).toBe("ambient");
    expect(parseLocalConfig(readFileSync(cfg, "utf8")).workloads.filter((w) => w.namespace === "legacy").map((w) => w.protocol)).toEqual(["HBONE", "HBONE"]);
    const off = await ctl(["--context", ctx, "unenroll", "legacy"]);
    expect(off.code, off.err).toBe(0);
    for (const n of [0, 1]) expect(parseInventory(readFileSync(inv(n), "utf8")).namespaces.get("legacy")?.["istio.io/dataplane-mode"]).toBeUndefined();
    expect(parseLocalConfig(readFileSync(cfg, "utf8"))).toEqual(parseLocalConfig(before));
    await expect.poll(async () => (await ctl(["--context", ctx, "status"])).code, { timeout: 20_000, interval: 500 }).toBe(0);
  });

  it("a second demo refuses to start while the kept one runs, and says how to remove it", () => {
    let code = 0;
    let err = "";
    try {
      execFileSync(process.execPath, [DEMO], { env: { ...process.env, AMBIENT_DEMO_ROOT: root }, stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 });
    } catch (e) {
      code = (e as { status: number }).status;
      err = String((e as { stderr: Buffer }).stderr);
    }
    expect(code).toBe(1);
    expect(err).toContain(`a kept demo (${id}) is still running`);
    expect(err).toContain("npm run demo -- --down");
  });

  it("--down removes the kept mesh; status then exits 3", async () => {
    execFileSync(process.execPath, [DEMO, "--down"], { env: { ...process.env, AMBIENT_DEMO_ROOT: root }, timeout: 60_000 });
    expect(execFileSync("ip", ["netns", "list"], { encoding: "utf8" })).not.toContain(`ad-${id}`);
    expect(existsSync(join(root, id))).toBe(false);
    expect(existsSync(join(root, "current.json"))).toBe(false);
    const r = await ctl(["--netns", `ad-${id}-n0`, "status"]);
    expect(r.code).toBe(3);
  });
});
