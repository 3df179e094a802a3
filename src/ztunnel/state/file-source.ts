import { createHash } from "node:crypto";
import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import { parseLocalConfig } from "./local-config.js";
import type { StateSource } from "./source.js";
import type { StateSink } from "./store.js";

// The local config file as a state source: loaded once at start (a bad file stops start-up),
// then watched. The directory is watched, not the file, because editors and ConfigMap
// updates replace the file by rename. A reload that fails keeps the old state and says why.

export interface FileSourceOptions {
  debounceMs?: number;
  log?: Logger;
  /** Called after every reload attempt (tests wait on it). */
  onReload?: (result: { ok: true } | { ok: false; error: Error }) => void;
}

export class FileStateSource implements StateSource {
  readonly name: string;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastHash = "";
  private sink: StateSink | undefined;
  private readonly debounceMs: number;
  private readonly log: Logger;
  private reloading: Promise<void> = Promise.resolve();

  constructor(
    private readonly path: string,
    private readonly opts: FileSourceOptions = {},
  ) {
    this.name = `file:${path}`;
    this.debounceMs = opts.debounceMs ?? 100;
    this.log = opts.log ?? logger("ztunnel.state");
  }

  async start(sink: StateSink): Promise<void> {
    this.sink = sink;
    const text = await readFile(this.path, "utf8");
    sink.replace(parseLocalConfig(text, this.path), this.path);
    this.lastHash = hash(text);
    const file = basename(this.path);
    this.watcher = watch(dirname(this.path), { persistent: false }, (_event, name) => {
      // Any change in the directory may be our file (rename-replace, ConfigMap symlink swap).
      if (name === null || name === file || name.startsWith("..")) this.schedule();
    });
    this.watcher.on("error", (err) => this.log.warn({ path: this.path, err: errorMessage(err) }, "config watch failed"));
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
    await this.reloading;
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.reloading = this.reloading.then(() => this.reload());
    }, this.debounceMs);
    this.timer.unref();
  }

  private async reload(): Promise<void> {
    if (this.watcher === undefined || this.sink === undefined) return;
    try {
      const text = await readFile(this.path, "utf8");
      const h = hash(text);
      if (h === this.lastHash) return;
      const data = parseLocalConfig(text, this.path);
      this.lastHash = h;
      this.sink.replace(data, this.path);
      this.log.info({ path: this.path, workloads: data.workloads.length, services: data.services.length }, "local config reloaded");
      this.opts.onReload?.({ ok: true });
    } catch (err) {
      this.log.warn({ path: this.path, err: errorMessage(err) }, "local config reload failed; keeping the previous state");
      this.opts.onReload?.({ ok: false, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }
}

function hash(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
