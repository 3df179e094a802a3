import { closeSync, openSync, readFileSync } from "node:fs";
import type { ThrottledLog } from "./limits.js";

// File-descriptor budgets (issue 16), counted in descriptors: the process's fd limit is split
// into a reserve for the node-level endpoints (admin, metrics, readiness, ZDS, the pods' netns
// copies) and an equal budget per worker. Within a worker every pod gets a share that leaves
// room for one more pod (budget / (pods + 1)), so one pod holding descriptors up to its share
// never takes the ones another pod needs. Outbound and inbound have a share each, so a pod that
// used up its outbound share can still be reached. A connection is admitted at what it holds
// relayed in JS (FDS_PER_CONNECTION); a plaintext one that the kernel relay carries asks for its
// pipes on top (SPLICE_EXTRA_FDS) and is relayed in JS when they do not fit. Unfinished TLS
// handshakes are bounded per pod and per worker (each holds buffers until the handshake
// timeout). A kernel-relayed connection's pipe capacity comes from a second budget, in pipe pages
// (see PIPE_SIZES). When the process does run out of fds (EMFILE/ENFILE, seen on a connect, a relay's
// pipe or by the probe, since libuv absorbs it on accept), new connections of pods above half
// their share are shed first until the pressure is gone.

/** One proxied connection holds two descriptors: the client side and the upstream. */
export const FDS_PER_CONNECTION = 2;
/** The kernel relay adds a pipe (two ends) per direction to a plaintext connection: 6 fds in all. */
export const SPLICE_EXTRA_FDS = 4;

// Pipe pages. The kernel counts every page of every pipe against the owning user's total, shared
// by all processes of that uid (root: most of the node's containers), and once the total passes
// /proc/sys/fs/pipe-user-pages-soft it gives the new pipes of that user's processes without
// CAP_SYS_RESOURCE/CAP_SYS_ADMIN two pages and refuses to enlarge them. Kernel-relayed
// connections taking pages without a bound would so slow down every other pod's pipes. So
// the relay's pipes come out of half the soft limit, per worker, and per pod within that a share
// that leaves room for one more pod (as the fds, but for both directions: a pod past its share
// gets smaller pipes, then the JS relay, and is never refused).

/** The kernel's default pipe-user-pages-soft (used too when it is 0, i.e. unlimited). */
export const KERNEL_PIPE_SOFT_PAGES = 16_384;
/** The kernel's accounting unit (one pipe slot). */
export const PIPE_PAGE_BYTES = 4096;
/** Pipe sizes a kernel-relayed connection asks for (each of its 2 pipes), largest first. */
export const PIPE_SIZES: readonly number[] = [256 * 1024, 64 * 1024, 16 * 1024];
/** Pipes per kernel-relayed connection (one per direction). */
const PIPES_PER_CONNECTION = 2;

/** /proc/sys/fs/pipe-user-pages-soft; the kernel's default when it cannot be read or parsed. */
export function readPipeSoftPages(path = "/proc/sys/fs/pipe-user-pages-soft"): number {
  try {
    const n = Number(readFileSync(path, "utf8").trim());
    return Number.isSafeInteger(n) && n >= 0 ? n : KERNEL_PIPE_SOFT_PAGES;
  } catch {
    return KERNEL_PIPE_SOFT_PAGES;
  }
}

/** A kernel-relayed connection's pipes: the size asked of each, and the pages to give back. */
export interface PipeGrant {
  readonly size: number;
  readonly release: () => void;
}

export interface FdBudget {
  /** RLIMIT_NOFILE (soft, after raising it to the hard limit). */
  readonly limit: number;
  /** Kept back for everything that is not a proxied connection. */
  readonly reserve: number;
  /** Descriptors one worker's proxied connections may hold (all pods together). */
  readonly perWorkerFds: number;
  /** The same in connections relayed in JS (perWorkerFds / FDS_PER_CONNECTION). */
  readonly perWorkerConnections: number;
  /** Unfinished inbound TLS handshakes per worker, and per pod on a worker. */
  readonly perWorkerHandshakes: number;
  readonly perPodHandshakes: number;
  /** Pipe pages one worker's kernel-relayed connections may hold (all pods together). */
  readonly perWorkerPipePages: number;
}

/** pipeSoftPages: /proc/sys/fs/pipe-user-pages-soft (0 = no limit). */
export function fdBudget(limit: number, workers: number, pipeSoftPages = KERNEL_PIPE_SOFT_PAGES): FdBudget {
  const reserve = Math.max(256, Math.floor(limit * 0.1));
  const perWorkerFds = Math.max(16 * FDS_PER_CONNECTION, Math.floor((limit - reserve) / Math.max(1, workers)));
  const perWorkerConnections = Math.floor(perWorkerFds / FDS_PER_CONNECTION);
  const perWorkerHandshakes = Math.max(8, Math.min(1024, Math.floor(perWorkerConnections / 8)));
  const perWorkerPipePages = Math.floor((pipeSoftPages > 0 ? pipeSoftPages : KERNEL_PIPE_SOFT_PAGES) / 2 / Math.max(1, workers));
  return { limit, reserve, perWorkerFds, perWorkerConnections, perWorkerHandshakes, perPodHandshakes: Math.max(4, Math.floor(perWorkerHandshakes / 4)), perWorkerPipePages };
}

export type ShedReason = "pod_share" | "worker_budget" | "handshakes" | "fd_pressure";

export interface BudgetCounters {
  shed: Record<ShedReason, number>;
  fdExhausted: number;
}

export type Direction = "outbound" | "inbound";

interface PodUsage {
  /** Descriptors held per direction. */
  fds: Record<Direction, number>;
  handshakes: number;
  /** Pipe pages held (both directions). */
  pipePages: number;
}

/** Admission for one pod on one worker (what its listeners and HBONE server ask). */
export interface PodAdmission {
  /** A proxied connection or an inbound stream's upstream (FDS_PER_CONNECTION); undefined = refuse it. */
  connection(direction: Direction): (() => void) | undefined;
  /**
   * More descriptors for a connection already admitted (the kernel relay's pipes), within the
   * same pod share and worker budget. Undefined = they do not fit: the caller takes its cheaper
   * way (no warning, nothing was refused).
   */
  extraFds(direction: Direction, n: number): (() => void) | undefined;
  /**
   * Pipes for a kernel-relayed connection: the largest of PIPE_SIZES that fits in the pod's
   * share of pipe pages and the worker's; undefined = none fits (relay it in JS, quietly).
   */
  pipes(): PipeGrant | undefined;
  /** An unfinished inbound TLS handshake; undefined = refuse the connection. */
  handshake(): (() => void) | undefined;
  /** The process ran out of descriptors on one of this pod's paths. */
  exhausted(code: string, where: string): void;
  /** The pod left this worker: its share goes back to the others. */
  leave(): void;
}

/** Admits everything (a server used outside a worker, e.g. in tests). */
export const UNLIMITED: PodAdmission = { connection: () => () => undefined, extraFds: () => () => undefined, pipes: () => ({ size: PIPE_SIZES[0]!, release: () => undefined }), handshake: () => () => undefined, exhausted: () => undefined, leave: () => undefined };

export class WorkerBudget {
  private readonly pods = new Map<string, PodUsage>();
  /** Descriptors this worker's proxied connections hold. */
  private fds = 0;
  private handshakes = 0;
  private pipePages = 0;
  private pressureUntil = -Infinity;
  private counters: BudgetCounters = emptyCounters();

  constructor(
    readonly budget: FdBudget,
    private readonly log: ThrottledLog,
    private readonly now: () => number = Date.now,
    /** How long one EMFILE keeps the shedding on. */
    private readonly pressureMs = 5_000,
  ) {}

  /** A pod's share of this worker's descriptors per direction: room for one more pod always stays. */
  podShareFds(): number {
    return Math.max(FDS_PER_CONNECTION, Math.floor(this.budget.perWorkerFds / 2 / (this.pods.size + 1)));
  }

  /** A pod's share of this worker's pipe pages (both directions): room for one more pod always stays. */
  podSharePipePages(): number {
    return Math.floor(this.budget.perWorkerPipePages / (this.pods.size + 1));
  }

  /** The same in connections relayed in JS. */
  podShare(): number {
    return Math.floor(this.podShareFds() / FDS_PER_CONNECTION);
  }

  addPod(uid: string, name: string): PodAdmission {
    const usage: PodUsage = { fds: { outbound: 0, inbound: 0 }, handshakes: 0, pipePages: 0 };
    this.pods.set(uid, usage);
    return {
      connection: (direction) => this.admitFds(uid, name, usage, direction, FDS_PER_CONNECTION, true),
      extraFds: (direction, n) => this.admitFds(uid, name, usage, direction, n, false),
      pipes: () => this.admitPipes(usage),
      handshake: () => this.admitHandshake(uid, name, usage),
      exhausted: (code, where) => this.exhausted(code, `${where} of ${name}`),
      leave: () => {
        if (this.pods.get(uid) === usage) this.pods.delete(uid);
      },
    };
  }

  /** EMFILE/ENFILE (or ENOBUFS/ENOMEM) somewhere in this worker: warn, count, start shedding. */
  exhausted(code: string, where: string): void {
    this.counters.fdExhausted++;
    this.pressureUntil = this.now() + this.pressureMs;
    this.log.warn({ code, where, limit: this.budget.limit, fds: this.fds, shareFds: this.podShareFds() }, "ztunnel is out of file descriptors; shedding new connections of the pods holding the most");
  }

  get underPressure(): boolean {
    return this.now() < this.pressureUntil;
  }

  /** Counts since the last call (sent to the main thread with the telemetry). */
  takeCounters(): BudgetCounters | undefined {
    const c = this.counters;
    if (c.fdExhausted === 0 && Object.values(c.shed).every((n) => n === 0)) return undefined;
    this.counters = emptyCounters();
    return c;
  }

  /** share: a pod's share per direction in JS-relayed connections; shareFds: the same in fds. */
  get stats(): { fds: number; handshakes: number; pods: number; share: number; shareFds: number; pipePages: number } {
    return { fds: this.fds, handshakes: this.handshakes, pods: this.pods.size, share: this.podShare(), shareFds: this.podShareFds(), pipePages: this.pipePages };
  }

  private admitPipes(usage: PodUsage): PipeGrant | undefined {
    const share = this.podSharePipePages();
    for (const size of PIPE_SIZES) {
      const pages = (PIPES_PER_CONNECTION * size) / PIPE_PAGE_BYTES;
      if (usage.pipePages + pages > share || this.pipePages + pages > this.budget.perWorkerPipePages) continue;
      usage.pipePages += pages;
      this.pipePages += pages;
      return {
        size,
        release: once(() => {
          usage.pipePages -= pages;
          this.pipePages -= pages;
        }),
      };
    }
    return undefined;
  }

  /** n descriptors for a pod: a new connection (refused: counted, warned) or extra ones for one. */
  private admitFds(uid: string, name: string, usage: PodUsage, direction: Direction, n: number, isConnection: boolean): (() => void) | undefined {
    const share = this.podShareFds();
    const mine = usage.fds[direction];
    let reason: ShedReason | undefined;
    if (this.fds + n > this.budget.perWorkerFds) reason = "worker_budget";
    else if (mine + n > share) reason = "pod_share";
    else if (this.underPressure && mine >= share / 2) reason = "fd_pressure";
    if (reason !== undefined) {
      if (!isConnection) return undefined;
      this.counters.shed[reason]++;
      this.log.warn({ pod: name, uid, direction, reason, podFds: mine, shareFds: share, workerFds: this.fds, workerBudgetFds: this.budget.perWorkerFds }, "connection budget reached; refusing the pod's new connections");
      return undefined;
    }
    usage.fds[direction] += n;
    this.fds += n;
    return once(() => {
      usage.fds[direction] -= n;
      this.fds -= n;
    });
  }

  private admitHandshake(uid: string, name: string, usage: PodUsage): (() => void) | undefined {
    if (this.handshakes >= this.budget.perWorkerHandshakes || usage.handshakes >= this.budget.perPodHandshakes) {
      this.counters.shed.handshakes++;
      this.log.warn({ pod: name, uid, podHandshakes: usage.handshakes, workerHandshakes: this.handshakes, perPod: this.budget.perPodHandshakes, perWorker: this.budget.perWorkerHandshakes }, "too many unfinished HBONE handshakes; refusing new ones");
      return undefined;
    }
    usage.handshakes++;
    this.handshakes++;
    return once(() => {
      usage.handshakes--;
      this.handshakes--;
    });
  }
}

function emptyCounters(): BudgetCounters {
  return { shed: { pod_share: 0, worker_budget: 0, handshakes: 0, fd_pressure: 0 }, fdExhausted: 0 };
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}

const FD_EXHAUSTED: ReadonlySet<string> = new Set(["EMFILE", "ENFILE"]);

export function isFdExhaustion(code: string | undefined): boolean {
  return code !== undefined && FD_EXHAUSTED.has(code);
}

/** EMFILE/ENFILE when the process cannot open one more descriptor right now, else undefined. */
export function probeFds(): string | undefined {
  try {
    closeSync(openSync("/dev/null", "r"));
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return isFdExhaustion(code) ? code : undefined;
  }
}
