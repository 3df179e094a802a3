// Runs inside the built image (scripts/image-smoke.sh mounts it read-only): the node agent and
// ztunnel, started through the image's entrypoints in one container as a cluster-free node,
// must reach ready over ZDS. Prints what it waited for; on failure, the logs.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const { generateRoot } = await import("/app/dist/src/ztunnel/tls/ca.js");

const dir = "/tmp/smoke";
for (const d of ["ca", "cni", "zds", "net.d", "bin"]) mkdirSync(join(dir, d), { recursive: true });
const root = await generateRoot("cluster.local");
writeFileSync(join(dir, "ca", "root-cert.pem"), root.certPem);
writeFileSync(join(dir, "ca", "ca-key.pem"), root.keyPem, { mode: 0o600 });
writeFileSync(join(dir, "inventory.yaml"), "namespaces: []\npods: []\n");
writeFileSync(join(dir, "local.yaml"), "workloads: []\nservices: []\n");

const zds = join(dir, "zds", "ztunnel.sock");
const procs = [];
function start(name, exe, env) {
  const log = join(dir, `${name}.log`);
  writeFileSync(log, "");
  const child = spawn(exe, [], { env: { PATH: process.env.PATH, NODE_NAME: "smoke", LOG_LEVEL: "info", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", (b) => writeFileSync(log, b, { flag: "a" }));
  child.stderr.on("data", (b) => writeFileSync(log, b, { flag: "a" }));
  procs.push({ name, child, log });
  return child;
}

async function waitFor(what, url, timeoutMs = 60_000) {
  const t0 = Date.now();
  for (;;) {
    for (const p of procs) if (p.child.exitCode !== null) throw new Error(`${p.name} exited (${p.child.exitCode}) while waiting for ${what}`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (r.status === 200) {
        console.log(`smoke: ${what} after ${Date.now() - t0} ms`);
        return;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what} (${url})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

try {
  start("cni-agent", "cni-agent", {
    LOCAL_INVENTORY_PATH: join(dir, "inventory.yaml"),
    CNI_AGENT_RUN_DIR: join(dir, "cni"),
    ZTUNNEL_UDS_ADDRESS: zds,
    CNI_INSTALL: "false",
    MOUNTED_CNI_NET_DIR: join(dir, "net.d"),
    MOUNTED_CNI_BIN_DIR: join(dir, "bin"),
    AMBIENT_IPV6: "false",
    AGENT_HTTP_ADDRESS: "127.0.0.1:8000",
  });
  await waitFor("cni-agent healthy", "http://127.0.0.1:8000/healthz");
  start("ztunnel", "ztunnel", {
    INPOD_UDS: zds,
    LOCAL_XDS_PATH: join(dir, "local.yaml"),
    CA_ROOT_DIR: join(dir, "ca"),
    ZTUNNEL_WORKER_THREADS: "1",
    TRUST_DOMAIN: "cluster.local",
    IPV6_ENABLED: "false",
  });
  await waitFor("ztunnel ready (its ZDS snapshot from the agent arrived)", "http://127.0.0.1:15021/healthz/ready");
  await waitFor("cni-agent ready (ztunnel connected over ZDS)", "http://127.0.0.1:8000/readyz");
  const log = readFileSync(join(dir, "cni-agent.log"), "utf8");
  if (!/ztunnel connected|snapshot sent/.test(log)) throw new Error("the agent's log does not show a ZDS connection from ztunnel");
  console.log("smoke: cni-agent and ztunnel ready over ZDS");
} catch (err) {
  console.error(`smoke failed: ${err instanceof Error ? err.message : String(err)}`);
  for (const p of procs) console.error(`---- ${p.name} log ----\n${readFileSync(p.log, "utf8").split("\n").slice(-30).join("\n")}`);
  process.exitCode = 1;
} finally {
  for (const p of procs) p.child.kill("SIGTERM");
}
