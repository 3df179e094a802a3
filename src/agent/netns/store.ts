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
  /** uid → the sandbox's CNI container id, when a CNI ADD told us (the DEL identity). */
  private containers = new Map<string, string>();
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
      const { pods, containers } = parsed as { pods?: unknown; containers?: unknown };
      this.map = new Map();
      this.containers = new Map();
      if (typeof pods === "object" && pods !== null) {
        for (const [uid, p] of Object.entries(pods)) if (typeof p === "string") this.map.set(uid, p);
      }
      if (typeof containers === "object" && containers !== null) {
        for (const [uid, c] of Object.entries(containers)) if (typeof c === "string" && this.map.has(uid)) this.containers.set(uid, c);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.log.warn({ file: this.path, err: errorMessage(err) }, "ignoring unreadable netns map");
      this.map = new Map();
      this.containers = new Map();
    }
  }

  containerId(uid: string): string | undefined {
    return this.containers.get(uid);
  }

  get(uid: string): string | undefined {
    return this.map.get(uid);
  }

  entries(): [string, string][] {
    return [...this.map];
  }

  set(uid: string, path: string, containerId?: string): Promise<void> {
    if (this.map.get(uid) === path && (containerId === undefined || this.containers.get(uid) === containerId)) return this.chain;
    if (this.map.get(uid) !== path) this.containers.delete(uid);
    this.map.set(uid, path);
    if (containerId !== undefined) this.containers.set(uid, containerId);
    return this.flush();
  }

  delete(uid: string): Promise<void> {
    if (!this.map.has(uid)) return this.chain;
    this.map.delete(uid);
    this.containers.delete(uid);
    return this.flush();
  }

  private flush(): Promise<void> {
    const doc: Record<string, unknown> = { pods: Object.fromEntries([...this.map].sort()) };
    if (this.containers.size > 0) doc.containers = Object.fromEntries([...this.containers].sort());
    const content = JSON.stringify(doc, null, 2) + "\n";
    const run = this.chain.then(async () => {
      await mkdir(join(this.path, ".."), { recursive: true, mode: 0o700 });
      await writeFileAtomic(this.path, content, 0o600);
    });
    this.chain = run.catch((err: unknown) => this.log.error({ file: this.path, err: errorMessage(err) }, "cannot persist the netns map"));
    return this.chain;
  }
}
