import { spawn } from "node:child_process";
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { chmod, copyFile, mkdir, symlink, unlink, writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { pluginEntry } from "../agent/install/entry.js";
import { DemoError } from "./apps.js";
import { run } from "./netns.js";

// Pods as a container runtime makes them: per node, podman (runc, cgroupfs, its own storage and
// config under the run dir) inside the node netns, a CNI network whose chain is the reference
// bridge + host-local plugins followed by ours. Each pod is a busybox container whose process is
// the app (httpd with a CGI that counts what a client posts). podman is entered with
// `nsenter --net` (not `ip netns exec`, whose /sys remount hides the cgroup mounts from runc).

export const CNI_REFERENCE_DIR = "/usr/lib/cni";
const BUSYBOX = "/bin/busybox";
const APPLETS = ["sh", "httpd", "head", "wc", "printf", "cat", "ip", "nc"];

/** The app's CGI: reads the posted body, answers who got how many bytes from whom. */
const COUNT_CGI = `#!/bin/sh
n=$(head -c "\${CONTENT_LENGTH:-0}" | wc -c)
printf 'Content-Type: text/plain\\r\\n\\r\\n%s received %s bytes from %s:%s\\n' "$POD" "$n" "$REMOTE_ADDR" "$REMOTE_PORT"
`;
export const COUNT_PATH = "/cgi-bin/count";

function onPath(cmd: string): string | undefined {
  for (const d of (process.env.PATH ?? "").split(delimiter)) {
    const p = join(d, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Why podman pods are not possible on this machine, or undefined when they are. */
export function podmanMissing(): string | undefined {
  const missing: string[] = [];
  for (const cmd of ["podman", "runc", "conmon", "nsenter"]) {
    if (onPath(cmd) === undefined && !(cmd === "conmon" && ["/usr/bin/conmon", "/usr/libexec/podman/conmon"].some((p) => existsSync(p)))) missing.push(cmd);
  }
  for (const p of ["bridge", "host-local"]) if (!existsSync(join(CNI_REFERENCE_DIR, p))) missing.push(join(CNI_REFERENCE_DIR, p));
  if (!existsSync(BUSYBOX)) missing.push(`${BUSYBOX} (busybox-static)`);
  return missing.length > 0 ? `missing ${missing.join(", ")}` : undefined;
}

export interface PodmanNodeSpec {
  dir: string;
  netnsPath: string;
  network: string;
  bridge: string;
  podCidr: string;
  gateway: string;
  agentRunDir: string;
  /** The plugin as an executable: the built single executable, or node + its main.js. */
  plugin: { exe: string } | { node: string; script: string };
}

export interface Container {
  id: string;
  netnsPath: string;
  ip: string;
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** One node's podman: its storage, CNI config and containers. */
export class PodmanNode {
  private readonly pending = new Set<Promise<CommandResult>>();
  private readonly netnsSeen = new Set<string>();

  constructor(private readonly spec: PodmanNodeSpec) {}

  get rootfs(): string {
    return join(this.spec.dir, "rootfs");
  }
  private get confPath(): string {
    return join(this.spec.dir, "containers.conf");
  }

  /** Storage dirs, CNI plugin dir (reference plugins + ours), the conflist, containers.conf, rootfs. */
  async prepare(): Promise<void> {
    const d = this.spec.dir;
    const bin = join(d, "cni-bin");
    const netDir = join(d, "net.d");
    for (const x of ["root", "runroot", "tmp", "cni-bin", "net.d", "ipam"]) await mkdir(join(d, x), { recursive: true, mode: 0o700 });
    for (const p of ["bridge", "host-local", "loopback"]) {
      if (existsSync(join(CNI_REFERENCE_DIR, p))) await symlink(join(CNI_REFERENCE_DIR, p), join(bin, p));
    }
    const plugin = this.spec.plugin;
    if ("exe" in plugin) await symlink(plugin.exe, join(bin, "ambient-cni"));
    else await writeFile(join(bin, "ambient-cni"), `#!/bin/sh\nexec '${plugin.node}' '${plugin.script}' "$@"\n`, { mode: 0o755 });
    const conflist = {
      cniVersion: "1.0.0",
      name: this.spec.network,
      plugins: [
        {
          type: "bridge",
          bridge: this.spec.bridge,
          isGateway: true,
          ipMasq: false,
          ipam: { type: "host-local", ranges: [[{ subnet: this.spec.podCidr, gateway: this.spec.gateway }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: join(d, "ipam") },
        },
        pluginEntry({ runDir: this.spec.agentRunDir, logLevel: "warn" }),
      ],
    };
    await writeFile(join(netDir, `${this.spec.network}.conflist`), `${JSON.stringify(conflist, null, 2)}\n`);
    await writeFile(
      this.confPath,
      `[engine]\nevents_logger = "none"\ncgroup_manager = "cgroupfs"\n[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["${bin}"]\nnetwork_config_dir = "${netDir}"\n`,
    );
    const rootfs = this.rootfs;
    for (const x of ["bin", "proc", "sys", "dev", "etc", "tmp", "run", "www/cgi-bin"]) await mkdir(join(rootfs, x), { recursive: true });
    await copyFile(BUSYBOX, join(rootfs, "bin", "busybox"));
    await chmod(join(rootfs, "bin", "busybox"), 0o755);
    for (const a of APPLETS) await symlink("busybox", join(rootfs, "bin", a));
    await writeFile(join(rootfs, "www", "cgi-bin", "count"), COUNT_CGI, { mode: 0o755 });
  }

  /**
   * `podman run -d` of one pod: CNI ADD runs bridge, host-local, then our plugin, which returns
   * only once the agent has enrolled the pod (rules, ztunnel listeners) — before httpd starts.
   */
  async runPod(name: string, label: string): Promise<Container> {
    const r = await this.podman([
      "run", "-d", "--name", name, "--hostname", name,
      "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
      "--network", this.spec.network, "--env", `POD=${label}`, "--rootfs", this.rootfs,
      "/bin/httpd", "-f", "-p", "0.0.0.0:8080", "-h", "/www",
    ]);
    if (r.code !== 0) throw new DemoError(`podman run of ${label} failed: ${r.stderr.trim() || r.stdout.trim()}`);
    const inspect = await this.podman(["inspect", name]);
    if (inspect.code !== 0) throw new DemoError(`podman inspect of ${label} failed: ${inspect.stderr.trim()}`);
    const info = (JSON.parse(inspect.stdout) as Array<{ Id: string; NetworkSettings: { SandboxKey: string; Networks?: Record<string, { IPAddress?: string }> } }>)[0];
    if (info === undefined) throw new DemoError(`podman inspect of ${label} returned nothing`);
    const netnsPath = info.NetworkSettings.SandboxKey;
    this.netnsSeen.add(netnsPath);
    return { id: info.Id, netnsPath, ip: info.NetworkSettings.Networks?.[this.spec.network]?.IPAddress ?? "" };
  }

  /** Removes every container (CNI DEL through the chain), then anything podman left mounted. */
  async destroy(): Promise<string[]> {
    const errors: string[] = [];
    // A podman command still running (interrupted mid-step) finishes first, so rm sees its container.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.pending]), new Promise((r) => (timer = setTimeout(r, 20_000)))]);
    clearTimeout(timer);
    if (existsSync(this.confPath)) {
      const r = await this.podman(["rm", "-af", "-t", "0"]);
      // Gone already (a second destroy, or podman removed it itself) is what we want.
      if (r.code !== 0 && !/no such container/i.test(r.stderr)) errors.push(`podman rm on ${this.spec.network}: ${r.stderr.trim()}`);
    }
    // Safety net: mounts under the node's dir (container shm, overlay, netns) and netns files
    // podman made. Deepest first; a lazy unmount of a parent also detaches its children, so a
    // mount may already be gone when its turn comes: that is success.
    for (const m of mountsUnder(this.spec.dir).reverse()) {
      const e = await unmount(m);
      if (e !== undefined) errors.push(e);
    }
    for (const ns of this.netnsSeen) {
      const e = await unmount(ns);
      if (e !== undefined) errors.push(e);
      await unlink(ns).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") errors.push(`${ns}: ${String(err)}`);
      });
    }
    return errors;
  }

  private async podman(args: string[]): Promise<CommandResult> {
    const d = this.spec.dir;
    const p = runDetached("nsenter", [
      `--net=${this.spec.netnsPath}`, "podman",
      "--root", join(d, "root"), "--runroot", join(d, "runroot"), "--tmpdir", join(d, "tmp"),
      "--runtime", "runc", "--cgroup-manager=cgroupfs", ...args,
    ], { CONTAINERS_CONF: this.confPath });
    this.pending.add(p);
    try {
      return await p;
    } finally {
      this.pending.delete(p);
    }
  }
}

/**
 * Runs a command in its own process group: a Ctrl-C in the terminal reaches only the demo,
 * which lets a podman command finish and then removes what it made, in order.
 */
function runDetached(cmd: string, args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: `${stderr}${err.message}` });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `umount -l` when still mounted; undefined on success (including "was not mounted"), else why not. */
export async function unmount(path: string): Promise<string | undefined> {
  if (!mountPoints().includes(path)) return undefined;
  try {
    await run("umount", ["-l", path]);
    return undefined;
  } catch (err) {
    // Raced with another unmount (a parent's lazy unmount took it along): gone is success.
    if (/not mounted|no mount point/i.test(String(err)) || !mountPoints().includes(path)) return undefined;
    return String(err);
  }
}

function mountPoints(): string[] {
  let text: string;
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return [];
  }
  return text.split("\n").map((l) => unescapeMount(l.split(" ")[4] ?? ""));
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMount(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  return mountPoints().filter((m) => m.startsWith(prefix));
}
