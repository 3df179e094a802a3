import { execFile, execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { SUPPORTED_VERSIONS } from "../../cni-plugin/cni/version.js";
import { startFakeAgent, type FakeAgent } from "../fixtures/cni-fake-agent.js";
import { useTempDirs } from "../fixtures/temp-dirs.js";
import { PLUGIN_EXECUTABLE, runCni, type CniEnv, type CniRun } from "../fixtures/cni-exec.js";
import { fakeKubeconfig, startFakeKube, type FakeKube } from "../fixtures/cni-fake-kube.js";

// The built single executable, run exactly as a container runtime runs it.
const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, "..", "..");
const GOLDEN_BODY = join(ROOT, "test", "golden", "cni", "cmdadd-body.json");

const tmp = useTempDirs("cni-exe-");

function env(command: string, extra: Partial<CniEnv> = {}): CniEnv {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: "0123abcd",
    CNI_NETNS: "/var/run/netns/cni-test",
    CNI_IFNAME: "eth0",
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1",
    CNI_PATH: "/opt/cni/bin",
    ...extra,
  };
}

function prevResult(version: string): Record<string, unknown> {
  const legacy = version.startsWith("0.");
  return {
    cniVersion: version,
    interfaces: [{ name: "eth0", mac: "0a:58:0a:f4:01:05", sandbox: "/var/run/netns/cni-test" }],
    ips: [{ ...(legacy ? { version: "4" } : {}), interface: 0, address: "10.244.1.5/24", gateway: "10.244.1.1" }],
    routes: [{ dst: "0.0.0.0/0" }],
    dns: {},
  };
}

function conf(version: string, runDir: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    cniVersion: version,
    name: "k8s-pod-network",
    type: "ambient-cni",
    cni_agent_run_dir: runDir,
    ambient_enabled: true,
    plugin_log_level: "debug",
    prevResult: prevResult(version),
    ...extra,
  });
}

function cniError(r: CniRun): { cniVersion: string; code: number; msg: string; details?: string } {
  expect(r.code).not.toBe(0);
  expect(r.stdout.endsWith("\n")).toBe(true);
  return JSON.parse(r.stdout) as { cniVersion: string; code: number; msg: string };
}

function expectCleanStderr(r: CniRun): void {
  // Every stderr line is a JSON log record; nothing but the result reached stdout.
  for (const line of r.stderr.split("\n").filter((l) => l !== "")) expect(() => JSON.parse(line) as unknown).not.toThrow();
}

async function rawServer(runDir: string, handler: Parameters<typeof createServer>[1]): Promise<Server> {
  const s = createServer(handler);
  await new Promise<void>((resolve) => s.listen(join(runDir, "pluginevent.sock"), resolve));
  return s;
}

async function closeRaw(s: Server): Promise<void> {
  await new Promise<void>((resolve) => {
    s.close(() => resolve());
    s.closeAllConnections();
  });
}

beforeAll(() => {
  // Idempotent: returns at once when the executable is up to date (npm test builds it first).
  execFileSync(process.execPath, [join(ROOT, "scripts", "build-cni-plugin.mjs")], { stdio: "ignore" });
}, 180_000);


describe("ambient-cni executable, every command × every cniVersion", () => {
  let runDir: string;
  let agent: FakeAgent;
  beforeAll(async () => {
    runDir = tmp();
    agent = await startFakeAgent(runDir);
  });
  afterAll(async () => {
    await agent.close();
  });

  it("VERSION prints the version object", async () => {
    const r = await runCni({ CNI_COMMAND: "VERSION" }, '{"cniVersion":"1.1.0"}');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ cniVersion: "1.1.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
  });

  for (const v of SUPPORTED_VERSIONS) {
    it(`cniVersion ${v}`, async () => {
      const before = agent.adds.length;
      const add = await runCni(env("ADD"), conf(v, runDir));
      expect(add.code, add.stderr).toBe(0);
      expectCleanStderr(add);
      const result = JSON.parse(add.stdout) as Record<string, unknown>;
      expect(result.cniVersion).toBe(v);
      expect(result.ips).toEqual([{ ...(v.startsWith("0.") ? { version: "4" } : {}), interface: 0, address: "10.244.1.5/24", gateway: "10.244.1.1" }]);
      expect(agent.adds.length).toBe(before + 1);
      expect(agent.adds.at(-1)).toEqual({
        netns: "/var/run/netns/cni-test",
        podName: "web-1",
        podNamespace: "shop",
        ips: [{ interface: 0, address: "10.244.1.5", prefixLength: 24, gateway: "10.244.1.1" }],
        // The sandbox identity rides in a header, the body stays Istio's.
        containerId: "0123abcd",
      });

      const noPrev = await runCni(env("ADD"), conf(v, runDir, { prevResult: undefined }));
      expect(JSON.parse(noPrev.stdout)).toEqual({ cniVersion: v, dns: {} });

      const dels = agent.dels.length;
      const del = await runCni(env("DEL", { CNI_NETNS: "" }), conf(v, runDir));
      expect([del.code, del.stdout]).toEqual([0, ""]);
      expect(agent.dels.at(dels)).toEqual({ containerId: "0123abcd", netns: "", podName: "web-1", podNamespace: "shop" });

      const check = await runCni(env("CHECK"), conf(v, runDir));
      if (v === "0.3.0" || v === "0.3.1") expect(cniError(check).code).toBe(1);
      else expect([check.code, check.stdout]).toEqual([0, ""]);

      for (const cmd of ["STATUS", "GC"]) {
        const r = await runCni({ CNI_COMMAND: cmd, CNI_PATH: "/opt/cni/bin" }, conf(v, runDir));
        if (v === "1.1.0") expect([r.code, r.stdout], r.stderr).toEqual([0, ""]);
        else expect(cniError(r)).toMatchObject({ cniVersion: v, code: 1 });
      }
    });
  }

  it("STATUS reports code 50 while the agent is not ready", async () => {
    agent.notReady = "ztunnel not connected";
    try {
      const r = await runCni({ CNI_COMMAND: "STATUS" }, conf("1.1.0", runDir));
      expect(cniError(r)).toMatchObject({ code: 50 });
      expect(cniError(r).msg).toContain("ztunnel not connected");
    } finally {
      agent.notReady = undefined;
    }
  });

  it("a refusing agent fails ADD with its reason", async () => {
    agent.decide = () => ({ outcome: "refused", reason: "no inventory entry for web-1" });
    try {
      const r = await runCni(env("ADD"), conf("1.0.0", runDir));
      const e = cniError(r);
      expect(e.code).toBe(999);
      expect(e.msg).toContain("no inventory entry for web-1");
    } finally {
      agent.decide = () => ({ outcome: "enrolled" });
    }
  });

  it("an agent error (500) fails ADD; not-enrolled passes", async () => {
    agent.decide = () => {
      throw new Error("iptables-restore failed");
    };
    try {
      expect(cniError(await runCni(env("ADD"), conf("1.0.0", runDir))).msg).toContain("iptables-restore failed");
      agent.decide = () => ({ outcome: "not-enrolled", reason: "not in inventory" });
      expect((await runCni(env("ADD"), conf("1.0.0", runDir))).code).toBe(0);
    } finally {
      agent.decide = () => ({ outcome: "enrolled" });
    }
  });

  it("forwards its log lines to the agent's log socket when one listens", async () => {
    const bodies: string[] = [];
    const logServer = createServer((req, res) => {
      let b = "";
      req.on("data", (c: Buffer) => (b += c.toString()));
      req.on("end", () => {
        bodies.push(`${req.method} ${req.url} ${b}`);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => logServer.listen(join(runDir, "log.sock"), resolve));
    try {
      const r = await runCni(env("ADD"), conf("1.0.0", runDir));
      expect(r.code).toBe(0);
      expect(bodies).toHaveLength(1);
      const [head, ...rest] = (bodies[0] ?? "").split(" ");
      expect(head).toBe("POST");
      expect(rest[0]).toBe("/log");
      const lines = JSON.parse(rest.slice(1).join(" ")) as string[];
      const recs = lines.map((l) => JSON.parse(l) as { msg: string; pod?: string });
      expect(recs.some((x) => x.msg === "agent accepted pod" && x.pod === "web-1")).toBe(true);
      // Same lines on stderr.
      expect(r.stderr).toContain("agent accepted pod");
    } finally {
      await closeRaw(logServer);
    }
  });

  it("at the installer's default level (info) a successful ADD makes no log exchange: the agent logs the ADD itself", async () => {
    const bodies: string[] = [];
    const logServer = createServer((req, res) => {
      bodies.push(`${req.method} ${req.url}`);
      req.resume();
      req.on("end", () => res.writeHead(200).end());
    });
    await new Promise<void>((resolve) => logServer.listen(join(runDir, "log.sock"), resolve));
    try {
      const r = await runCni(env("ADD"), conf("1.0.0", runDir, { plugin_log_level: "info" }));
      expect(r.code, r.stderr).toBe(0);
      expect(bodies).toEqual([]);
      expect(r.stderr).not.toContain("agent accepted pod");
    } finally {
      await closeRaw(logServer);
    }
  });

  it("excluded namespaces, the agent's namespace and disabled ambient pass through without the agent", async () => {
    const before = agent.adds.length;
    const cases = [
      env("ADD", { CNI_ARGS: "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns" }),
      env("ADD", { CNI_ARGS: "K8S_POD_NAMESPACE=istio-system;K8S_POD_NAME=ztunnel-x" }),
      env("ADD", { CNI_ARGS: "" }),
    ];
    for (const e of cases) {
      const r = await runCni(e, conf("1.0.0", runDir, { pod_namespace: "istio-system" }));
      expect(r.code, r.stdout).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ cniVersion: "1.0.0" });
    }
    expect((await runCni(env("ADD"), conf("1.0.0", runDir, { ambient_enabled: false }))).code).toBe(0);
    expect(agent.adds.length).toBe(before);
  });

  // Issue 16 item 4: a garbled CNI_ARGS used to let the pod start unenrolled.
  it("a garbled CNI_ARGS fails the ADD closed with a CNI error naming what is wrong, unless the namespace never enrolls", async () => {
    const before = agent.adds.length;
    for (const args of ["K8S_POD_NAMESPACE=shop;K8S_POD_NAME", "K8S_POD_NAMESPACE=shop; K8S_POD_NAME=web-1", "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;junk"]) {
      const r = await runCni(env("ADD", { CNI_ARGS: args }), conf("1.0.0", runDir));
      expect(r.code, args).not.toBe(0);
      expect(cniError(r), args).toMatchObject({ cniVersion: "1.0.0", code: 4, msg: expect.stringMatching(/^malformed CNI_ARGS: .*(not KEY=VALUE|is not K8S_POD_NAME)/) });
    }
    expect(agent.adds.length).toBe(before);
    // kube-system never enrolls: a garbled name there is not our business.
    const ok = await runCni(env("ADD", { CNI_ARGS: "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME" }), conf("1.0.0", runDir));
    expect(ok.code, ok.stdout).toBe(0);
    expect(agent.adds.length).toBe(before);
  });

  it("reads the whole config from a non-blocking stdin that fills late", async () => {
    // The plugin reads stdin synchronously; on a non-blocking stdin that runs dry (EAGAIN) the
    // bytes read before must not be lost. Node's spawn makes a child's stdio blocking, so a
    // small Python runtime hands over a non-blocking socketpair and writes in two parts.
    const runtime = [
      "import os, socket, subprocess, sys, time",
      "exe, first, rest = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()",
      "a, b = socket.socketpair()",
      "b.setblocking(False)",
      "p = subprocess.Popen([exe], stdin=b.fileno(), stdout=subprocess.PIPE, env=dict(os.environ))",
      "b.close()",
      "a.sendall(first)",
      "time.sleep(0.3)",
      "a.sendall(rest)",
      "a.shutdown(socket.SHUT_WR)",
      "out, _ = p.communicate()",
      "sys.stdout.write(out.decode())",
      "sys.exit(p.returncode)",
    ].join("\n");
    const before = agent.adds.length;
    const text = conf("1.0.0", runDir);
    // Asynchronous: the fake agent answering the ADD runs in this process's event loop.
    const { stdout } = await execFileAsync("/usr/bin/python3", ["-c", runtime, PLUGIN_EXECUTABLE, text.slice(0, 40), text.slice(40)], {
      env: { ...env("ADD") },
      encoding: "utf8",
    });
    expect(JSON.parse(stdout)).toMatchObject({ cniVersion: "1.0.0", ips: [{ address: "10.244.1.5/24" }] });
    expect(agent.adds.length).toBe(before + 1);
  });
});

describe("ambient-cni executable, failures", () => {
  let server: Server | undefined;
  afterEach(async () => {
    if (server) await closeRaw(server);
    server = undefined;
  });

  it("fails ADD with code 11 when the agent socket is missing or closed", async () => {
    const runDir = tmp();
    const missing = await runCni(env("ADD"), conf("1.0.0", runDir));
    expect(cniError(missing)).toMatchObject({ cniVersion: "1.0.0", code: 11 });
    expect(cniError(missing).msg).toContain("pluginevent.sock");
    // A socket file with nobody listening (agent died): connect is refused.
    writeFileSync(join(runDir, "pluginevent.sock"), "");
    expect(cniError(await runCni(env("ADD"), conf("1.0.0", runDir))).code).toBe(11);
    // DEL still succeeds: the runtime must be able to tear down.
    expect((await runCni(env("DEL"), conf("1.0.0", runDir))).code).toBe(0);
    expect(cniError(await runCni({ CNI_COMMAND: "STATUS" }, conf("1.1.0", runDir))).code).toBe(50);
  });

  it("fails ADD on a bare 500 and sends Istio's exact JSON", async () => {
    const runDir = tmp();
    const bodies: string[] = [];
    server = await rawServer(runDir, (req, res) => {
      let b = "";
      req.on("data", (c: Buffer) => (b += c.toString()));
      req.on("end", () => {
        bodies.push(`${req.method} ${req.url} ${req.headers["content-type"]}\n${b}`);
        res.writeHead(500).end();
      });
    });
    const prev = {
      cniVersion: "1.0.0",
      interfaces: [{ name: "a" }, { name: "b" }, { name: "eth0", sandbox: "/var/run/netns/cni-5f1c2b" }],
      ips: [
        { interface: 2, address: "10.244.1.5/24", gateway: "10.244.1.1" },
        { interface: 2, address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1" },
        { address: "10.0.0.7/32" },
      ],
    };
    const r = await runCni(
      env("ADD", { CNI_NETNS: "/var/run/netns/cni-5f1c2b", CNI_ARGS: "K8S_POD_NAMESPACE=bookinfo;K8S_POD_NAME=reviews-v1-7d9f" }),
      conf("1.0.0", runDir, { prevResult: prev }),
    );
    expect(cniError(r)).toMatchObject({ code: 999 });
    expect(bodies).toEqual([`POST /cmdadd application/json\n${readFileSync(GOLDEN_BODY, "utf8")}`]);
  });

  it("fails ADD after 5 s when the agent never answers", async () => {
    const runDir = tmp();
    server = await rawServer(runDir, () => undefined);
    const r = await runCni(env("ADD"), conf("1.0.0", runDir));
    expect(cniError(r).code).toBe(11);
    // The agent never answers: only the plugin's own 5 s deadline can end the ADD.
    expect(r.ms).toBeGreaterThanOrEqual(4900);
  }, 20_000);

  it("reports spec error codes for bad input", async () => {
    const runDir = tmp();
    expect(cniError(await runCni(env("ADD"), "{not json")).code).toBe(6);
    expect(cniError(await runCni(env("ADD"), conf("0.2.0", runDir))).code).toBe(1);
    expect(cniError(await runCni(env("ADD"), JSON.stringify({ cniVersion: "1.0.0", type: "x" }))).code).toBe(7);
    expect(cniError(await runCni(env("ADD", { CNI_NETNS: "" }), conf("1.0.0", runDir))).code).toBe(4);
    expect(cniError(await runCni({ CNI_COMMAND: "BOGUS" }, conf("1.0.0", runDir))).code).toBe(4);
    expect(cniError(await runCni(env("CHECK"), conf("1.0.0", runDir, { prevResult: undefined }))).code).toBe(7);
    const bad = cniError(await runCni(env("ADD"), conf("0.4.0", runDir, { prevResult: { ips: [{ address: "nope" }] } })));
    expect(bad).toMatchObject({ cniVersion: "0.4.0", code: 6 });
  });
});

describe("ambient-cni executable with a kubeconfig", () => {
  let runDir: string;
  let agent: FakeAgent;
  let kube: FakeKube;
  let kubeconfig: string;
  beforeAll(async () => {
    runDir = tmp();
    agent = await startFakeAgent(runDir);
    kube = await startFakeKube();
    kubeconfig = join(runDir, "ambient-cni-kubeconfig");
    writeFileSync(kubeconfig, fakeKubeconfig(kube.url, "tok-123"), { mode: 0o600 });
    kube.namespaces.set("mesh", { "istio.io/dataplane-mode": "ambient" });
    kube.namespaces.set("plain", {});
    kube.pods.set("mesh/in", {});
    kube.pods.set("mesh/out", { labels: { "istio.io/dataplane-mode": "none" } });
    kube.pods.set("plain/p", {});
    kube.pods.set("plain/labelled", { labels: { "istio.io/dataplane-mode": "ambient" } });
  });
  afterAll(async () => {
    await agent.close();
    await kube.close();
  });

  const add = (ns: string, name: string) =>
    runCni(env("ADD", { CNI_ARGS: `K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${name}` }), conf("1.0.0", runDir, { kubeconfig }));

  it("passes non-ambient pods without contacting the agent", async () => {
    for (const [ns, name] of [["plain", "p"], ["mesh", "out"]] as const) {
      kube.calls.length = 0;
      const r = await add(ns, name);
      expect(r.code, r.stdout).toBe(0);
      expect(kube.calls.map((c) => c.path).sort()).toEqual([`/api/v1/namespaces/${ns}`, `/api/v1/namespaces/${ns}/pods/${name}`]);
      expect(kube.calls.every((c) => c.authorization === "Bearer tok-123")).toBe(true);
    }
    expect(agent.adds).toEqual([]);
  });

  it("sends ambient pods (namespace or pod label) to the agent", async () => {
    expect((await add("mesh", "in")).code).toBe(0);
    expect((await add("plain", "labelled")).code).toBe(0);
    expect(agent.adds.map((a) => `${a.podNamespace}/${a.podName}`)).toEqual(["mesh/in", "plain/labelled"]);
  });

  it("contacts nobody for an excluded namespace", async () => {
    kube.calls.length = 0;
    const before = agent.adds.length;
    expect((await add("kube-system", "coredns")).code).toBe(0);
    expect(kube.calls).toEqual([]);
    expect(agent.adds.length).toBe(before);
  });

  it("passes a sandbox without K8S_POD_NAMESPACE (not a Kubernetes pod) without asking anyone", async () => {
    kube.calls.length = 0;
    const before = agent.adds.length;
    const r = await runCni(env("ADD", { CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=podman-ctr" }), conf("1.0.0", runDir, { kubeconfig }));
    expect(r.code).toBe(0);
    expect(kube.calls).toEqual([]);
    expect(agent.adds.length).toBe(before);
  });

  it("fails closed when the pod is unknown to the API server", async () => {
    const r = await add("mesh", "ghost");
    expect(cniError(r).msg).toContain("HTTP 404");
  });
});

describe("ambient-cni executable against an https API server", () => {
  let runDir: string;
  let agent: FakeAgent;
  let kube: FakeKube;
  let caPem: string;
  beforeAll(async () => {
    runDir = tmp();
    const key = join(runDir, "tls.key");
    const crt = join(runDir, "tls.crt");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=fake-apiserver", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", crt,
    ], { stdio: "ignore" });
    caPem = readFileSync(crt, "utf8");
    kube = await startFakeKube({ key: readFileSync(key, "utf8"), cert: caPem });
    kube.namespaces.set("mesh", { "istio.io/dataplane-mode": "ambient" });
    kube.pods.set("mesh/a", {});
    agent = await startFakeAgent(runDir);
  });
  afterAll(async () => {
    await agent.close();
    await kube.close();
  });

  it("verifies the server with the kubeconfig's CA (YAML kubeconfig, tokenFile)", async () => {
    const caFile = join(runDir, "ca.crt");
    writeFileSync(caFile, caPem);
    writeFileSync(join(runDir, "token"), "yaml-token\n");
    const kubeconfig = join(runDir, "kubeconfig.yaml");
    writeFileSync(
      kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        "current-context: c",
        "clusters:",
        "- name: k",
        "  cluster:",
        `    server: ${kube.url}`,
        `    certificate-authority: ${caFile}`,
        "users:",
        "- name: u",
        "  user:",
        `    tokenFile: ${join(runDir, "token")}`,
        "contexts:",
        "- name: c",
        "  context: {cluster: k, user: u}",
        "",
      ].join("\n"),
    );
    const r = await runCni(env("ADD", { CNI_ARGS: "K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=a" }), conf("1.0.0", runDir, { kubeconfig }));
    expect(r.code, r.stdout).toBe(0);
    expect(agent.adds.map((a) => a.podName)).toEqual(["a"]);
    expect(kube.calls.every((c) => c.authorization === "Bearer yaml-token")).toBe(true);
  });

  it("fails closed when the server's certificate does not match the CA", async () => {
    const kubeconfig = join(runDir, "wrong-ca.json");
    const other = join(runDir, "other");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=other", "-keyout", `${other}.key`, "-out", `${other}.crt`,
    ], { stdio: "ignore" });
    const doc = JSON.parse(fakeKubeconfig(kube.url, "t")) as { clusters: { cluster: Record<string, string> }[] };
    const cluster = doc.clusters[0]?.cluster;
    if (cluster) cluster["certificate-authority-data"] = readFileSync(`${other}.crt`).toString("base64");
    writeFileSync(kubeconfig, JSON.stringify(doc));
    const before = agent.adds.length;
    const r = await runCni(env("ADD", { CNI_ARGS: "K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=a" }), conf("1.0.0", runDir, { kubeconfig }));
    const e = cniError(r);
    expect(e.code).toBe(11);
    expect(e.msg).toMatch(/certificate/i);
    expect(agent.adds.length).toBe(before);
  });
});
