import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage } from "../../shared/errors.js";
import { logger, type Logger } from "../../shared/log.js";
import { writeFileAtomic } from "../install/atomic.js";

export const NETNS_MAP_FILE = "pod-netns.json";

/**
 * uid → netns path of enrolled pods, persisted in the run dir so a restarted agent finds pods
 * whose netns a /proc scan cannot (podman cgroups carry libpod-<id>, not a pod UID). Every
 * write replaces the file atomically; writes are serialised in call order.
 */
export class NetnsPathStore {
  private readonly path: string;
  private map = new Map<string, string>();
  private chain: Promise<void> = Promise.resolve();

  constructor(
    runDir: string,
    private readonly log: Logger = logger("netns-store"),
  ) {
    // A subdirectory: the CNI installer watches the run dir itself and would wake on every write.
    this.path = join(runDir, "state", NETNS_MAP_FILE);
  }

  get file(): string {
    return this.path;
  }

  /** Loads the file; a missing or unreadable file is an empty map (logged), never fatal. */
  async load(): Promise<void> {
    try {
      const parsed: unknown = JSON.parse(await readFile(this.path, "utf8"));
      const pods = (parsed as { pods?: unknown }).pods;
      this.map = new Map();
      if (typeof pods === "object" && pods !== null) {
        for (const [uid, p] of Object.entries(pods)) if (typeof p === "string") this.map.set(uid, p);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.log.warn({ file: this.path, err: errorMessage(err) }, "ignoring unreadable netns map");
      this.map = new Map();
    }
  }

  get(uid: string): string | undefined {
    return this.map.get(uid);
  }

  entries(): [string, string][] {
    return [...this.map];
  }

  set(uid: string, path: string): Promise<void> {
    if (this.map.get(uid) === path) return this.chain;
    this.map.set(uid, path);
    return this.flush();
  }

  delete(uid: string): Promise<void> {
    if (!this.map.has(uid)) return this.chain;
    this.map.delete(uid);
    return this.flush();
  }

  private flush(): Promise<void> {
    const content = JSON.stringify({ pods: Object.fromEntries([...this.map].sort()) }, null, 2) + "\n";
    const run = this.chain.then(async () => {
      await mkdir(join(this.path, ".."), { recursive: true, mode: 0o700 });
      await writeFileAtomic(this.path, content, 0o600);
    });
    this.chain = run.catch((err: unknown) => this.log.error({ file: this.path, err: errorMessage(err) }, "cannot persist the netns map"));
    return this.chain;
  }
}
