import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import { InventoryError } from "../errors.js";
import { parseInventory, type Inventory } from "./inventory.js";
import type { PodView } from "./model.js";
import type { EnrollmentSource } from "./source.js";

export interface InventorySourceOptions {
  /** Where this component logs (default: a child of the process root). */
  log?: Logger;
  path: string;
  /** Coalesces bursts of file events (default 100 ms). */
  debounceMs?: number;
  /** Re-reads even without events, in case one was missed (default 5 s). */
  pollMs?: number;
}

/**
 * Enrollment from the local inventory file, reloaded on change. The directory is watched (an
 * editor or `mv` replaces the file, which a watch on the file itself would lose); a reload
 * that fails to parse keeps the previous view and logs why.
 */
export class InventorySource implements EnrollmentSource {
  private readonly log: Logger;
  readonly kind = "inventory" as const;
  private current: Inventory = { namespaces: new Map(), pods: [] };
  private lastText: string | undefined;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;
  private onChange: () => void = () => {};
  private lastError: string | undefined;

  constructor(private readonly opts: InventorySourceOptions) {
    this.log = opts.log ?? logger("inventory");
  }

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    const text = await this.read();
    this.current = parseInventory(text, this.opts.path);
    this.lastText = text;
    this.log.info({ file: this.opts.path, pods: this.current.pods.length, namespaces: this.current.namespaces.size }, "inventory loaded");
    const name = basename(this.opts.path);
    this.watcher = watch(dirname(this.opts.path), (_ev, file) => {
      if (file === null || file === name) this.schedule();
    });
    this.watcher.on("error", (err) => this.log.warn({ err: errorMessage(err) }, "inventory watch failed; relying on polling"));
    this.poll = setInterval(() => void this.reload(), this.opts.pollMs ?? 5000);
  }

  pods(): PodView[] {
    return this.current.pods;
  }

  namespaceLabels(namespace: string): Record<string, string> | undefined {
    return this.current.namespaces.get(namespace);
  }

  async lookup(namespace: string, name: string): Promise<PodView | undefined> {
    // A CNI ADD may arrive right after the file was rewritten, before the watch event's
    // debounce fired: decide from the file as it is now, not from the last reload.
    await this.reload();
    if (namespace !== "") return this.current.pods.find((p) => p.namespace === namespace && p.name === name);
    // podman passes only the pod name: accept it when exactly one pod has that name.
    const matches = this.current.pods.filter((p) => p.name === name);
    return matches.length === 1 ? matches[0] : undefined;
  }

  async setRedirection(): Promise<void> {
    // No API to record progress on: the agent's state and metrics say it.
  }

  notReadyReason(): string | undefined {
    return undefined; // a bad reload keeps the previous view: still serving
  }

  /** The last reload error (the previous view stays in use), for logs and tests. */
  get reloadError(): string | undefined {
    return this.lastError;
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    this.watcher = undefined;
    clearTimeout(this.debounce);
    clearInterval(this.poll);
  }

  private schedule(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload(), this.opts.debounceMs ?? 100);
  }

  private async read(): Promise<string> {
    try {
      return await readFile(this.opts.path, "utf8");
    } catch (err) {
      throw new InventoryError(`cannot read the inventory ${this.opts.path}: ${errorMessage(err)}`, { cause: err });
    }
  }

  private async reload(): Promise<void> {
    let text: string;
    try {
      text = await this.read();
    } catch (err) {
      this.fail(errorMessage(err));
      return;
    }
    if (text === this.lastText) return;
    try {
      this.current = parseInventory(text, this.opts.path);
    } catch (err) {
      this.lastText = text;
      this.fail(errorMessage(err));
      return;
    }
    this.lastText = text;
    this.lastError = undefined;
    this.log.info({ pods: this.current.pods.length, namespaces: this.current.namespaces.size }, "inventory reloaded");
    this.onChange();
  }

  private fail(message: string): void {
    if (message !== this.lastError) this.log.error({ err: message }, "inventory not reloaded; keeping the previous one");
    this.lastError = message;
  }
}
