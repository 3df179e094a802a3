import { watch, type FSWatcher } from "node:fs";
import { mkdir, readFile, readdir, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { AmbientError, errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import { copyFileAtomic, writeFileAtomic } from "./atomic.js";
import { planCleanup, planInstall, type ConfFile, type InstallPlan } from "./conflist.js";
import { PLUGIN_TYPE, pluginEntry, type PluginEntryOptions } from "./entry.js";
import { PLUGIN_KUBECONFIG_NAME, renderPluginKubeconfig, type PluginKubeSource } from "./kubeconfig.js";

export interface InstallerOptions {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  /** The built plugin executable to copy (dist/cni-plugin/ambient-cni in this repo). */
  pluginBinary: string;
  /** Host CNI bin dir (e.g. /opt/cni/bin); the binary lands at <binDir>/<pluginType>. */
  binDir: string;
  /** Host CNI net dir (e.g. /etc/cni/net.d). */
  netDir: string;
  /** CNI_CONF_NAME: chain into this file (or its .conf↔.conflist twin) instead of the first one. */
  confName?: string;
  /** The agent's run dir (pluginevent.sock and the plugin kubeconfig live here). */
  runDir: string;
  plugin?: Omit<PluginEntryOptions, "runDir" | "kubeconfigPath">;
  /** Without it the plugin runs cluster-free: the agent decides every ADD. */
  kube?: PluginKubeSource;
  /** True while the agent's DaemonSet still exists: cleanup then leaves the plugin in place. */
  isUpgrade: () => boolean | Promise<boolean>;
  pluginType?: string;
  /** Coalesces bursts of file events (default 100 ms). */
  debounceMs?: number;
  /** Full re-check even without events, in case an event was missed (default 5 s). */
  resyncMs?: number;
  /** Called after each reconcile (metrics, tests). */
  onReconcile?: (r: ReconcileReport) => void;
}

export interface ReconcileReport {
  binary: "unchanged" | "installed";
  kubeconfig: "unchanged" | "written" | "none";
  conflist: InstallPlan;
}

export interface CleanupReport {
  upgrade: boolean;
  removed: string[];
}

export class InstallError extends AmbientError {
  constructor(message: string, cause: unknown) {
    super("CNI_INSTALL", message, { cause });
  }
}

interface FileId {
  ino: number;
  size: number;
  mtimeMs: number;
}

const CONF_EXT = /\.(conf|conflist|json)$/;

async function readConfFiles(netDir: string): Promise<{ files: ConfFile[]; modes: Map<string, number> }> {
  const files: ConfFile[] = [];
  const modes = new Map<string, number>();
  let names: string[];
  try {
    names = await readdir(netDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { files, modes };
    throw err;
  }
  for (const name of names) {
    if (!CONF_EXT.test(name)) continue;
    try {
      const p = join(netDir, name);
      const st = await stat(p);
      if (!st.isFile()) continue;
      files.push({ name, content: await readFile(p, "utf8") });
      modes.set(name, st.mode & 0o7777);
    } catch {
      // Vanished between readdir and read: the next event brings us back.
    }
  }
  return { files, modes };
}

/**
 * Installs the plugin on the host and keeps it installed: binary (atomic copy), kubeconfig
 * (0600), conflist entry; file events on the bin dir, net dir, run dir and token trigger a
 * reconcile, so a deleted binary or entry is back within a debounce interval.
 */
export class CniInstaller {
  private readonly log: Logger;
  private readonly opts: InstallerOptions;
  private readonly pluginType: string;
  private readonly binPath: string;
  private readonly kubeconfigPath: string | undefined;
  private watchers = new Map<string, FSWatcher>();
  private installed: FileId | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private resync: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;

  constructor(opts: InstallerOptions) {
    this.log = opts.log ?? logger("cni-install");
    this.opts = opts;
    this.pluginType = opts.pluginType ?? PLUGIN_TYPE;
    this.binPath = join(opts.binDir, this.pluginType);
    this.kubeconfigPath = opts.kube ? join(opts.runDir, PLUGIN_KUBECONFIG_NAME) : undefined;
  }

  get binaryPath(): string {
    return this.binPath;
  }

  entry(): Record<string, unknown> & { type: string } {
    const o: PluginEntryOptions = { ...this.opts.plugin, runDir: this.opts.runDir };
    if (this.kubeconfigPath !== undefined) o.kubeconfigPath = this.kubeconfigPath;
    return pluginEntry(o, this.pluginType);
  }

  /** One full pass: binary, then kubeconfig, then the conflist (never an entry without a binary). */
  async reconcile(): Promise<ReconcileReport> {
    const report: ReconcileReport = {
      binary: await this.ensureBinary(),
      kubeconfig: await this.ensureKubeconfig(),
      conflist: await this.ensureConflist(),
    };
    if (report.binary !== "unchanged" || report.kubeconfig === "written" || report.conflist.action === "write") {
      this.log.info({ ...report }, "CNI plugin installed/repaired");
    }
    this.opts.onReconcile?.(report);
    return report;
  }

  private async ensureBinary(): Promise<"unchanged" | "installed"> {
    try {
      const st = await stat(this.binPath);
      const id = this.installed;
      if (id && st.ino === id.ino && st.size === id.size && st.mtimeMs === id.mtimeMs) return "unchanged";
    } catch {
      // missing: install below
    }
    await mkdir(this.opts.binDir, { recursive: true });
    try {
      await copyFileAtomic(this.opts.pluginBinary, this.binPath, 0o755);
    } catch (err) {
      throw new InstallError(`cannot install ${this.opts.pluginBinary} into ${this.opts.binDir}: ${errorMessage(err)}`, err);
    }
    const st = await stat(this.binPath);
    this.installed = { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
    return "installed";
  }

  private async ensureKubeconfig(): Promise<"unchanged" | "written" | "none"> {
    const kube = this.opts.kube;
    if (kube === undefined || this.kubeconfigPath === undefined) return "none";
    let token: string;
    let ca: Buffer | undefined;
    try {
      token = (await readFile(kube.tokenFile, "utf8")).trim();
      ca = kube.caFile !== undefined ? await readFile(kube.caFile) : undefined;
    } catch (err) {
      throw new InstallError(`cannot read the service account token or CA for the plugin kubeconfig: ${errorMessage(err)}`, err);
    }
    const want = renderPluginKubeconfig(kube.server, token, ca, kube.insecureSkipTlsVerify === true);
    try {
      const [have, st] = await Promise.all([readFile(this.kubeconfigPath, "utf8"), stat(this.kubeconfigPath)]);
      if (have === want && (st.mode & 0o777) === 0o600) return "unchanged";
    } catch {
      // missing: write below
    }
    await mkdir(this.opts.runDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.kubeconfigPath, want, 0o600);
    return "written";
  }

  private async ensureConflist(): Promise<InstallPlan> {
    const { files, modes } = await readConfFiles(this.opts.netDir);
    const plan = planInstall(files, this.entry(), this.opts.confName);
    if (plan.action !== "write") return plan;
    const mode = modes.get(plan.source) ?? 0o644;
    await writeFileAtomic(join(this.opts.netDir, plan.target), plan.content, mode);
    if (plan.removeSource) await rm(join(this.opts.netDir, plan.source), { force: true });
    return plan;
  }

  /** Installs once, then keeps repairing until stop()/cleanup(). */
  async start(): Promise<ReconcileReport> {
    this.stopped = false;
    await mkdir(this.opts.netDir, { recursive: true });
    await mkdir(this.opts.binDir, { recursive: true });
    const report = await this.reconcile();
    this.rewatch();
    this.resync = setInterval(() => {
      this.rewatch();
      this.schedule(0);
    }, this.opts.resyncMs ?? 5000);
    this.resync.unref();
    return report;
  }

  private watchDirs(): string[] {
    const dirs = [this.opts.binDir, this.opts.netDir, this.opts.runDir];
    if (this.opts.kube !== undefined) dirs.push(dirname(this.opts.kube.tokenFile));
    if (this.opts.kube?.caFile !== undefined) dirs.push(dirname(this.opts.kube.caFile));
    return [...new Set(dirs)];
  }

  /** (Re)creates a watcher for every directory that has none (e.g. one was deleted and recreated). */
  private rewatch(): void {
    for (const dir of this.watchDirs()) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, () => this.schedule(this.opts.debounceMs ?? 100));
        w.on("error", () => {
          w.close();
          this.watchers.delete(dir);
          this.schedule(0);
        });
        this.watchers.set(dir, w);
      } catch {
        // Directory missing for now; the periodic resync retries.
      }
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.debounce !== undefined) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      void this.runSerial();
    }, delayMs);
  }

  /** Reconciles one at a time; events during a pass cause exactly one more pass. */
  private async runSerial(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        if (this.stopped) return;
        try {
          await this.reconcile();
        } catch (err) {
          this.log.error({ err: errorMessage(err) }, "CNI plugin repair failed; retrying on the next event or resync");
        }
      } while (this.again);
    })();
    try {
      await this.running;
    } finally {
      this.running = undefined;
    }
  }

  /** Stops watching (no cleanup). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.debounce !== undefined) clearTimeout(this.debounce);
    if (this.resync !== undefined) clearInterval(this.resync);
    this.debounce = undefined;
    this.resync = undefined;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    if (this.running) await this.running;
  }

  /**
   * On agent exit: remove our entry, the kubeconfig and the binary — unless an upgrade is in
   * progress, when the entry stays so new pods fail (and are retried) until the new agent is up.
   */
  async cleanup(): Promise<CleanupReport> {
    await this.stop();
    if (await this.opts.isUpgrade()) {
      this.log.info("upgrade in progress: leaving the CNI plugin installed");
      return { upgrade: true, removed: [] };
    }
    const removed: string[] = [];
    const { files, modes } = await readConfFiles(this.opts.netDir);
    for (const step of planCleanup(files, this.pluginType)) {
      const p = join(this.opts.netDir, step.name);
      if (step.action === "remove") await rm(p, { force: true });
      else await writeFileAtomic(p, step.content, modes.get(step.name) ?? 0o644);
      removed.push(p);
    }
    for (const p of [this.kubeconfigPath, this.binPath]) {
      if (p === undefined) continue;
      await rm(p, { force: true });
      removed.push(p);
    }
    this.log.info({ removed }, "CNI plugin uninstalled");
    return { upgrade: false, removed };
  }
}
