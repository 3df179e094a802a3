import { EventEmitter } from "node:events";
import { Worker } from "node:worker_threads";
import { closeFd } from "../../native/index.js";
import { errorMessage } from "../../shared/errors.js";
import type { Logger } from "../../shared/log.js";
import type { StateSnapshot } from "../state/types.js";
import type { WorkerInit } from "../worker/entry.js";
import { HBONE_LOAD_NOT_UP, type FromWorker, type ListenerInfo, type OpenConnection, type Telemetry, type ToWorker, type WorkerSettings } from "../worker/messages.js";
import { WorkerExitedError } from "./errors.js";
import { HandoffLedger } from "./handoffs.js";

// The proxy worker threads: spawned at start, each told every state snapshot; requests carry
// an id and resolve on the worker's reply. A worker that dies is replaced (with a growing
// delay if it keeps dying); the main thread first closes the netns fd copies the dead worker
// had opened (fds are process-wide and outlive the thread), then the new worker is announced
// so the pod manager can re-add every pod to it.

export type WorkerRequest = { t: "addPod"; pod: Extract<ToWorker, { t: "addPod" }>["pod"] } | { t: "removePod"; uid: string } | { t: "drain"; deadlineMs: number };

export type WorkerReply = { ok: true; listeners: readonly ListenerInfo[] } | { ok: false; error: string };

export type SlotState = "starting" | "up" | "restarting" | "stopped";

export interface WorkerStatus {
  readonly index: number;
  readonly generation: number;
  readonly state: SlotState;
  readonly threadId: number;
  readonly restarts: number;
  readonly lastExit: string | undefined;
  readonly accepted: number;
  readonly active: number;
  readonly eventLoopLagMs: number;
}

export interface WorkerPoolEvents {
  /** A replacement worker is up (generation > 1): its pods must be re-added. */
  replaced: [index: number, generation: number];
  telemetry: [index: number, t: Telemetry];
  changed: [];
}

export interface WorkerPoolOptions {
  readonly script: string | URL;
  readonly count: number;
  readonly settings: Omit<WorkerSettings, "index">;
  readonly snapshot: () => StateSnapshot;
  readonly log: Logger;
  /** First replacement delay; doubles while a worker keeps dying young (cap 5 s). */
  readonly restartDelayMs?: number;
  /** A worker that does not answer a pod add/remove within this fails it (drain: its deadline + this). */
  readonly requestTimeoutMs?: number;
}

interface Slot {
  index: number;
  generation: number;
  worker: Worker;
  state: SlotState;
  ready: Promise<void>;
  pending: Map<number, (r: WorkerReply) => void>;
  listings: Map<number, (c: Readonly<Record<string, readonly OpenConnection[]>>) => void>;
  /** Netns fd copies the worker opened and has not closed. */
  fds: Set<number>;
  restarts: number;
  lastExit: string | undefined;
  startedAt: number;
  accepted: number;
  active: number;
  lag: number;
}

const MAX_RESTART_DELAY_MS = 5_000;

export class WorkerPool extends EventEmitter<WorkerPoolEvents> {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private stopping = false;
  /** Set by POST /logging; a replacement worker starts with it too. */
  private logLevel: string | undefined;

  /** Open inbound HBONE connections per worker (HBONE_LOAD_NOT_UP while a worker is not up), shared with them. */
  private readonly hboneLoad: Int32Array;
  /** Inbound HBONE connections handed to a worker that has not taken them yet. */
  private readonly handoffs = new HandoffLedger();

  constructor(private readonly opts: WorkerPoolOptions) {
    super();
    this.hboneLoad = new Int32Array(new SharedArrayBuffer(4 * Math.max(1, opts.count))).fill(HBONE_LOAD_NOT_UP);
  }

  get size(): number {
    return this.opts.count;
  }

  /** Spawns every worker and waits until each says it is ready. */
  async start(): Promise<void> {
    for (let i = 0; i < this.opts.count; i++) this.slots.push(this.spawn(i, 1, 0));
    await Promise.all(this.slots.map((s) => s.ready));
  }

  onReplaced(cb: (index: number, generation: number) => void): void {
    this.on("replaced", cb);
  }

  generation(index: number): number {
    return this.slot(index).generation;
  }

  statuses(): WorkerStatus[] {
    return this.slots.map((s) => ({
      index: s.index,
      generation: s.generation,
      state: s.state,
      threadId: s.worker.threadId,
      restarts: s.restarts,
      lastExit: s.lastExit,
      accepted: s.accepted,
      active: s.active,
      eventLoopLagMs: s.lag,
    }));
  }

  /** Sends a request to one worker (waiting for it to be up) and resolves with its reply. */
  async request(index: number, req: WorkerRequest): Promise<WorkerReply & { generation: number }> {
    const slot = this.slot(index);
    await slot.ready;
    const current = this.slot(index);
    if (current !== slot) return this.request(index, req);
    if (slot.state !== "up") return { ok: false, error: `worker ${index} is ${slot.state}`, generation: slot.generation };
    const id = this.nextId++;
    const limit = (this.opts.requestTimeoutMs ?? 10_000) + (req.t === "drain" ? req.deadlineMs : 0);
    let timer: NodeJS.Timeout | undefined;
    const reply = new Promise<WorkerReply>((resolve) => {
      slot.pending.set(id, resolve);
      // A stuck worker must not hold a ZDS Ack (or shutdown) forever.
      timer = setTimeout(() => {
        slot.pending.delete(id);
        resolve({ ok: false, error: `worker ${index} did not answer ${req.t} within ${limit} ms` });
      }, limit);
    });
    slot.worker.postMessage({ ...req, id } as ToWorker);
    const r = await reply;
    clearTimeout(timer);
    return { ...r, generation: slot.generation };
  }

  /** A message every live worker gets (state snapshots, renewed certificates). */
  broadcast(msg: Extract<ToWorker, { t: "state" } | { t: "cert" }>): void {
    for (const s of this.slots) if (s.state === "up" || s.state === "starting") s.worker.postMessage(msg);
  }

  /** Changes the log level of every worker (and of the ones spawned later). */
  setLogLevel(level: string): void {
    this.logLevel = level;
    for (const s of this.slots) if (s.state === "up" || s.state === "starting") s.worker.postMessage({ t: "logLevel", level } satisfies ToWorker);
  }

  /** Open connections per pod uid, merged over the workers that answer within `timeoutMs`. */
  async openConnections(timeoutMs = 500): Promise<Record<string, OpenConnection[]>> {
    const parts = await Promise.all(
      this.slots
        .filter((s) => s.state === "up")
        .map(
          (s) =>
            new Promise<Readonly<Record<string, readonly OpenConnection[]>>>((resolve) => {
              const id = this.nextId++;
              const timer = setTimeout(() => {
                s.listings.delete(id);
                resolve({});
              }, timeoutMs);
              s.listings.set(id, (c) => {
                clearTimeout(timer);
                resolve(c);
              });
              s.worker.postMessage({ t: "listConnections", id } satisfies ToWorker);
            }),
        ),
    );
    const out: Record<string, OpenConnection[]> = {};
    for (const p of parts) for (const [uid, list] of Object.entries(p)) (out[uid] ??= []).push(...list);
    return out;
  }

  /** Debug: makes worker `index` throw an uncaught error. */
  crash(index: number): void {
    this.slot(index).worker.postMessage({ t: "crash" } satisfies ToWorker);
  }

  /** Terminates every worker (after drain) and closes any fd copy they left. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.slots.map(async (s) => {
        s.state = "stopped";
        await s.worker.terminate();
        this.closeLeftovers(s);
      }),
    );
  }

  private slot(index: number): Slot {
    const s = this.slots[index];
    if (s === undefined) throw new RangeError(`no worker ${index} (there are ${this.slots.length})`);
    return s;
  }

  private spawn(index: number, generation: number, restarts: number): Slot {
    const init: WorkerInit = { settings: { ...this.opts.settings, index }, snapshot: this.opts.snapshot(), hboneLoad: this.hboneLoad.buffer as SharedArrayBuffer };
    const worker = new Worker(this.opts.script, { workerData: init, name: `ztunnel-worker-${index}` });
    let markReady!: () => void;
    const slot: Slot = {
      index,
      generation,
      worker,
      state: "starting",
      ready: new Promise<void>((r) => (markReady = r)),
      pending: new Map(),
      listings: new Map(),
      fds: new Set(),
      restarts,
      lastExit: undefined,
      startedAt: Date.now(),
      accepted: 0,
      active: 0,
      lag: 0,
    };
    worker.on("message", (m: FromWorker) => {
      switch (m.t) {
        case "ready":
          if (slot.state === "starting") slot.state = "up";
          // A new worker holds no connections yet; from now on others may hand it some.
          Atomics.store(this.hboneLoad, index, 0);
          // A snapshot may have changed between spawn and ready.
          worker.postMessage({ t: "state", snapshot: this.opts.snapshot() } satisfies ToWorker);
          if (this.logLevel !== undefined) worker.postMessage({ t: "logLevel", level: this.logLevel } satisfies ToWorker);
          markReady();
          this.emit("changed");
          if (generation > 1) this.emit("replaced", index, generation);
          return;
        case "reply": {
          const resolve = slot.pending.get(m.id);
          slot.pending.delete(m.id);
          resolve?.(m.ok ? { ok: true, listeners: m.listeners } : { ok: false, error: m.error });
          return;
        }
        case "connections": {
          const resolve = slot.listings.get(m.id);
          slot.listings.delete(m.id);
          resolve?.(m.connections);
          return;
        }
        case "fdOpened":
          slot.fds.add(m.fd);
          return;
        case "fdClosed":
          slot.fds.delete(m.fd);
          return;
        case "hboneHandoff":
          this.handOff(index, m.uid, m.fd, m.to, m.returned);
          return;
        case "hboneHandoffTaken":
          this.handoffs.taken(m.id);
          return;
        case "telemetry":
          slot.accepted += m.accepted;
          slot.active = m.active;
          slot.lag = m.eventLoopLagMs;
          this.emit("telemetry", index, m);
          return;
      }
    });
    worker.on("error", (err) => {
      slot.lastExit = errorMessage(err);
      this.opts.log.error({ worker: index, err: errorMessage(err) }, "proxy worker crashed");
    });
    worker.once("exit", (code) => this.onExit(slot, code, markReady));
    return slot;
  }

  /**
   * Passes an inbound HBONE connection from one worker to another, owning its fd until `to`
   * says it took it (closed here if `to` dies first); closes it now if `to` is not up.
   */
  private handOff(from: number, uid: string, fd: number, to: number, returned: boolean): void {
    const target = this.slots[to];
    if (target !== undefined && target.state === "up") {
      const id = this.handoffs.add(to, fd);
      target.worker.postMessage({ t: "hboneHandoff", id, uid, fd, from, returned } satisfies ToWorker);
      return;
    }
    this.opts.log.debug({ from, to, uid }, "HBONE connection handed to a worker that is not up; closing it");
    try {
      closeFd(fd);
    } catch {
      // Already gone.
    }
  }

  /** Inbound HBONE connections handed to a worker that it has not taken yet. */
  get handoffsInFlight(): number {
    return this.handoffs.size;
  }

  private onExit(slot: Slot, code: number, markReady: () => void): void {
    slot.lastExit ??= `exited with code ${code}`;
    // Its connections died with it; nothing more is handed to it until a replacement is up.
    Atomics.store(this.hboneLoad, slot.index, HBONE_LOAD_NOT_UP);
    // Connections on their way to it that it never took: nobody else will close them.
    const lost = this.handoffs.closeFor(slot.index);
    if (lost > 0) this.opts.log.info({ worker: slot.index, connections: lost }, "closed inbound HBONE connections handed to a worker that died before taking them");
    const err = new WorkerExitedError(slot.index, slot.lastExit);
    for (const resolve of slot.pending.values()) resolve({ ok: false, error: err.message });
    slot.pending.clear();
    // A dead worker has no open connections to list; do not keep config_dump waiting.
    for (const resolve of slot.listings.values()) resolve({});
    slot.listings.clear();
    // The thread is gone, so nothing can use or close these numbers any more: close them now.
    this.closeLeftovers(slot);
    if (this.stopping || slot.state === "stopped") {
      slot.state = "stopped";
      markReady();
      return;
    }
    slot.state = "restarting";
    this.emit("changed");
    const young = Date.now() - slot.startedAt < 10_000;
    const base = this.opts.restartDelayMs ?? 100;
    const delay = young ? Math.min(base * 2 ** Math.min(slot.restarts, 10), MAX_RESTART_DELAY_MS) : base;
    this.opts.log.warn({ worker: slot.index, reason: slot.lastExit, restartInMs: delay }, "replacing the proxy worker");
    // Requests made meanwhile wait for the replacement (request() follows the slot).
    const next = new Promise<void>((resolve) => {
      setTimeout(() => {
        if (this.stopping) {
          resolve();
          return;
        }
        const fresh = this.spawn(slot.index, slot.generation + 1, slot.restarts + 1);
        this.slots[slot.index] = fresh;
        void fresh.ready.then(resolve);
      }, delay);
    });
    slot.ready = next;
    markReady();
  }

  private closeLeftovers(slot: Slot): void {
    for (const fd of slot.fds) {
      try {
        closeFd(fd);
      } catch (err) {
        this.opts.log.warn({ worker: slot.index, fd, err: errorMessage(err) }, "closing a dead worker's netns fd failed");
      }
    }
    if (slot.fds.size > 0) this.opts.log.info({ worker: slot.index, fds: [...slot.fds] }, "closed the netns fds of a stopped worker");
    slot.fds.clear();
  }
}
