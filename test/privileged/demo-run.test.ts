import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { podmanMissing } from "../../src/demo/podman.js";
import { describePrivileged } from "../harness/privileged.js";

// The local demo as a user runs it (the compiled dist/src/demo/main.js): it completes, shows
// the listeners and an HBONE transfer with both identities, and leaves nothing behind: no
// netns, link, rule, process or file, also when interrupted with SIGINT midway. Both ways of
// making pods: the harness's netns, and podman containers through the CNI chain (whose
// container netns, mounts and conmon processes are checked as well).

const ROOT = join(import.meta.dirname, "..", "..");
const MAIN = join(ROOT, "dist", "src", "demo", "main.js");

interface DemoRunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function startDemo(root: string, args: string[] = []): { child: ChildProcess; done: Promise<DemoRunResult>; output: () => string } {
  const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, AMBIENT_DEMO_ROOT: root }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<DemoRunResult>((resolve) => child.once("exit", (code) => resolve({ code, stdout, stderr })));
  return { child, done, output: () => stdout };
}

/** Everything a run with this id could have left behind. */
function leftovers(root: string, stdout: string): string[] {
  const id = /ambient mesh demo ([0-9a-f]{6})/.exec(stdout)?.[1];
  // Without the run id nothing below could be found: fail rather than report "nothing left".
  if (id === undefined) throw new Error(`no run id ("ambient mesh demo <id>") in the demo's output; cannot check leftovers:\n${stdout}`);
  const found: string[] = [];
  const netns = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
  for (const l of netns.split("\n")) if (l.includes(id)) found.push(`netns ${l}`);
  const links = execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" });
  for (const l of links.split("\n")) if (l.includes(id)) found.push(`link ${l}`);
  // The run's pod network (10.<x>.<node>.0/24) must not appear in the machine's own netns.
  const x = /pods 10\.(\d+)\.0\.0\/24/.exec(stdout)?.[1];
  if (x !== undefined) {
    const needle = `10.${x}.`;
    for (const [what, cmd, args] of [["rule", "ip", ["rule"]], ["route", "ip", ["route", "show", "table", "all"]], ["iptables", "iptables-save", []]] as const) {
      for (const l of execFileSync(cmd, [...args], { encoding: "utf8" }).split("\n")) if (l.includes(needle)) found.push(`${what} ${l}`);
    }
  }
  for (const m of stdout.matchAll(/pid (\d+)/g)) {
    const pid = Number(m[1]);
    if (existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z")) found.push(`process ${pid}`);
  }
  // Also processes started before their pid was printed: their environment names the run dir.
  const runDir = `${join(root, id)}/`;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    let env = "";
    try {
      env = readFileSync(`/proc/${pid}/environ`, "latin1");
    } catch {
      continue;
    }
    if (env.includes(runDir) && !found.includes(`process ${pid}`)) found.push(`process ${pid} (environment names ${runDir})`);
  }
  for (const p of [join(root, id), join(root, "topology", `${id}.json`), join(root, "current.json")]) if (existsSync(p)) found.push(`file ${p}`);
  // podman: the containers' netns files and anything mounted under the run's storage.
  for (const m of stdout.matchAll(/netns (\/run\/netns\/netns-[0-9a-f-]+)/g)) if (existsSync(m[1]!)) found.push(`container netns ${m[1]!}`);
  for (const l of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) if (l.includes(`${root}/`)) found.push(`mount ${l}`);
  // ... and the containers' cgroups (cgroupfs manager: <controller>/libpod_parent/libpod-<id>).
  const containers = [...stdout.matchAll(/container ([0-9a-f]{12})/g)].map((m) => m[1]!);
  if (containers.length > 0) {
    for (const base of ["/sys/fs/cgroup", ...readdirSync("/sys/fs/cgroup").map((c) => join("/sys/fs/cgroup", c))]) {
      const parent = join(base, "libpod_parent");
      if (!existsSync(parent)) continue;
      for (const e of readdirSync(parent)) if (containers.some((c) => e.startsWith(`libpod-${c}`))) found.push(`cgroup ${join(parent, e)}`);
    }
  }
  return found;
}

async function waitForOutput(output: () => string, text: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!output().includes(text)) {
    if (Date.now() > deadline) throw new Error(`demo did not print "${text}" within ${timeoutMs} ms; got:\n${output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describePrivileged("local demo (npm run demo)", () => {
  const roots: string[] = [];
  const children: ChildProcess[] = [];

  function newRoot(): string {
    const r = mkdtempSync(join(tmpdir(), "demo-test-"));
    roots.push(r);
    return r;
  }

  beforeAll(() => {
    if (!existsSync(MAIN)) {
      try {
        execFileSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: "ignore" });
      } catch {
        // tsc writes its output even when a file elsewhere has type errors
      }
    }
    expect(existsSync(MAIN)).toBe(true);
  }, 120_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    // Safety net: a failed assertion above must not leave a mesh running.
    for (const r of roots) {
      try {
        execFileSync(process.execPath, [MAIN, "--down"], { env: { ...process.env, AMBIENT_DEMO_ROOT: r }, stdio: "ignore", timeout: 30_000 });
      } catch {
        // reported by the tests themselves
      }
      rmSync(r, { recursive: true, force: true });
    }
  }, 60_000);

  for (const mode of ["harness", "podman"] as const) it(`--pods ${mode}: completes, prints each pod's listeners and an HBONE transfer with both identities, and removes everything`, async () => {
    const root = newRoot();
    const run = startDemo(root, ["--pods", mode]);
    children.push(run.child);
    const r = await run.done;
    expect(r.code, `stderr:\n${r.stderr}\nstdout:\n${r.stdout}`).toBe(0);
    const out = r.stdout;
    expect(out).toContain(`pods: ${mode === "podman" ? "podman containers" : "harness network namespaces"}`);
    if (mode === "podman") {
      // Six containers, each in its own netns made by podman (not the harness), at the planned address.
      expect([...out.matchAll(/10\.\d+\.[01]\.[234]\s+container [0-9a-f]{12}\s+netns \/run\/netns\/netns-/g)]).toHaveLength(6);
      expect(out).not.toMatch(/ad-[0-9a-f]{6}-n\dp\d/);
    }
    // Listeners: every enrolled pod, the three ztunnel ports, each with the ztunnel mark, on both workers.
    for (const pod of ["demo/frontend-0", "demo/backend-0", "demo/frontend-1", "demo/backend-1"]) {
      for (const port of ["15001", "15006", "15008"]) expect(out).toMatch(new RegExp(`${pod}\\s+spiffe://cluster\\.local/ns/demo/sa/\\w+\\s+0\\.0\\.0\\.0:${port}\\s+\\S+\\s+\\S+\\s+0x539\\s+0,1`));
    }
    expect(out).not.toMatch(/legacy\/legacy-\d\s+spiffe/);
    // Pod start latency (issue 21 item 4): each agent's CNI ADD → ztunnel ack histogram, both enrolled pods of each node.
    const heading = "pod start (CNI ADD → ztunnel ack), from each node agent's istio_cni_pod_ready_seconds (p50/p99 estimated from its buckets):";
    expect(out).toContain(heading);
    const latency = out.slice(out.indexOf(heading));
    for (const node of ["node0", "node1"]) expect(latency).toMatch(new RegExp(`^\\s+${node}: p50 \\d+ms p99 \\d+ms over 2 pods$`, "m"));
    // The cross-node transfer arrived whole, and the app saw the client's own address.
    expect(out).toMatch(/demo\/backend-1 received 1048576 bytes from 10\.\d+\.0\.2:/);
    // HBONE section: client and server identities of the cross-node connection, on node1's ztunnel.
    const hbone = out.slice(out.indexOf("HBONE connections and the identities"));
    const row = /node1\s+10\.\d+\.0\.2:\d+\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/frontend\s+10\.\d+\.1\.3:8080\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/backend\s+(\d+)/.exec(hbone);
    expect(row, hbone).not.toBeNull();
    // podman's app is httpd: the body plus a short POST header.
    if (mode === "harness") expect(Number(row![1])).toBe(1048576);
    else expect(Number(row![1])).toBeGreaterThan(1048576);
    expect(Number(row![1])).toBeLessThan(1048576 + 200);
    // The policy step: the destination ztunnel refuses the CONNECT with 401; the app never sees it.
    const policy = out.slice(out.indexOf("Authorization: a Deny policy on demo/backend-1"), out.indexOf("Connections ztunnel carried"));
    expect(policy).toMatch(/node0 outbound: CONNECT 10\.\d+\.1\.3:8080 answered 401/);
    expect(policy).toMatch(/node1 inbound: .*denied by policy demo\/deny-frontend/);
    if (mode === "harness") expect(policy).toContain("demo/backend-1 saw no connection");
    expect(out).toMatch(/node0\s+outbound\s+demo\/frontend-0\s+demo\/backend-1\s+HBONE \(mTLS\)\s+CONNECT \S+ answered 401/);
    // DNS: the mesh Service's name resolved inside frontend-0 by ztunnel's proxy (captured UDP 53).
    expect(out).toMatch(/answer\s+10\.96\.0\.10\s+\(Service backend\.demo's VIP/);
    // Plaintext both ways with the pod outside the mesh.
    expect(out).toMatch(/legacy\/legacy-0 received 16384 bytes/);
    expect(out).toMatch(/node0\s+inbound\s+legacy\/legacy-1\s+demo\/backend-0\s+plaintext/);
    expect(out).toMatch(/Metric totals per node/);
    expect(out).toMatch(/"scope":"access"/);
    expect(out).toContain("done: nothing left behind");
    expect(leftovers(root, out)).toEqual([]);
  }, 90_000);

  it("auto picks podman when podman, runc and the CNI plugins are installed, else the harness, and says which", async () => {
    // Only the mode line is needed: stop right after it.
    const root = newRoot();
    const run = startDemo(root);
    children.push(run.child);
    await waitForOutput(run.output, "[1] Topology");
    run.child.kill("SIGINT");
    const r = await run.done;
    const missing = podmanMissing();
    expect(r.stdout).toContain(
      missing === undefined
        ? "pods: podman containers (runc; CNI chain bridge + host-local + ambient-cni) [auto: podman, runc and the CNI reference plugins found]"
        : `pods: harness network namespaces (veth; our CNI plugin run as a runtime would) [auto: podman path unavailable, ${missing}]`,
    );
    expect(r.code).toBe(130);
    expect(leftovers(root, r.stdout)).toEqual([]);
  }, 60_000);

  for (const [mode, label, marker] of [
    ["harness", "while the nodes start", "[3] Starting one node agent"],
    ["harness", "while pods are being enrolled", "[5] Starting the pods"],
    ["podman", "while containers are being created and enrolled", "[5] Starting the pods"],
    ["harness", "during traffic", "[7] Traffic between pods"],
  ] as const) {
    it(`--pods ${mode}: SIGINT ${label}: exits 130 and leaves nothing behind`, async () => {
      const root = newRoot();
      const run = startDemo(root, ["--pods", mode]);
      children.push(run.child);
      await waitForOutput(run.output, marker);
      run.child.kill("SIGINT");
      const r = await run.done;
      expect(r.code, `stderr:\n${r.stderr}`).toBe(130);
      expect(r.stderr).toContain("SIGINT: stopping and removing everything");
      expect(r.stdout).toContain("done: nothing left behind");
      expect(leftovers(root, r.stdout)).toEqual([]);
    }, 90_000);
  }

  it("--down with nothing kept is a no-op; a usage error exits 2", () => {
    const root = newRoot();
    const env = { ...process.env, AMBIENT_DEMO_ROOT: root };
    expect(execFileSync(process.execPath, [MAIN, "--down"], { env, encoding: "utf8" })).toContain("nothing to do");
    let code = 0;
    try {
      execFileSync(process.execPath, [MAIN, "--bogus"], { env, stdio: "ignore" });
    } catch (err) {
      code = (err as { status: number }).status;
    }
    expect(code).toBe(2);
    for (const args of [["--pods", "docker"], ["--pods", "podman", "--keep"]]) {
      const r = spawnSync(process.execPath, [MAIN, ...args], { env, encoding: "utf8" });
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/--pods must be harness, podman or auto|--keep works with --pods harness only/);
    }
  });
});
