import type { Socket } from "node:net";
import { errorMessage } from "../../shared/errors.js";
import { SPLICE_EXTRA_FDS, UNLIMITED, isFdExhaustion, type PipeGrant } from "./budget.js";
import { Relay, type RelayOptions, type RelayResult } from "./relay.js";
import { SpliceSocketRelay } from "./splice-relay.js";

// The one seam between a plaintext TCP pair (passthrough, inbound 15006) and the relay that
// copies it: in the kernel (splice, the default) or in JS. The kernel relay's pipes are asked of
// the pod's fd budget first, their capacity of its pipe-page budget; a pair the kernel relay cannot take (pipes beyond the pod's share,
// bytes queued in Node, no fds left) goes to the JS relay, and the caller hears which relay ran
// and why not the kernel one. ZTUNNEL_PLAINTEXT_RELAY=js forces the JS relay.

/** ZTUNNEL_PLAINTEXT_RELAY. */
export type PlaintextRelayKind = "splice" | "js";

/** Which relay carried a connection (the access record's `relay`, the relays counter). */
export type RelayUsed = "kernel" | "js";

/** Why a plaintext connection was relayed in JS. */
export type JsRelayReason =
  /** ZTUNNEL_PLAINTEXT_RELAY=js. */
  | "configured"
  /** The kernel relay's pipes did not fit in the pod's fd share (or the worker's budget). */
  | "fd_budget"
  /** Not even the smallest pipes fit in the pod's share of pipe pages (or the worker's). */
  | "pipe_budget"
  /** The sockets could not be handed over (bytes queued in Node, no fd). */
  | "not_handed_over"
  /** EMFILE/ENFILE opening the pipes. */
  | "fd_exhausted"
  /** Any other failure to start the kernel relay. */
  | "splice_failed";

/** Plaintext connections per relay since the last telemetry flush (JS: per reason). */
export interface RelayCounts {
  kernel: number;
  js: Partial<Record<JsRelayReason, number>>;
}

export interface JsRelayWhy {
  readonly reason: JsRelayReason;
  /** The failure, for fd_exhausted and splice_failed. */
  readonly error?: Error;
  /** Its errno code (EMFILE, EEXIST…), when it has one. */
  readonly code?: string;
}

/** What the seam needs from the pod a connection belongs to. */
export interface PlaintextRelayChoice {
  readonly kind: PlaintextRelayKind;
  /** The pod's fd budget in this connection's direction; undefined = the descriptors do not fit. */
  readonly extraFds: (n: number) => (() => void) | undefined;
  /** The pod's pipe pages: the kernel relay's pipe size; undefined = none fits. */
  readonly pipes: () => PipeGrant | undefined;
  /** Told which relay carried each connection, and why it was not the kernel relay. */
  readonly used: (relay: RelayUsed, why?: JsRelayWhy) => void;
}

export interface PlaintextRelay {
  readonly done: Promise<RelayResult>;
  readonly relay: RelayUsed;
  abort(reason?: Error): void;
}

/** A choice with no budget and nobody listening (tests, tools). */
export function unmetered(kind: PlaintextRelayKind): PlaintextRelayChoice {
  return { kind, extraFds: () => () => undefined, pipes: UNLIMITED.pipes, used: () => undefined };
}

/** Starts relaying; with the JS relay, both sockets' reading is resumed here. */
export function startPlaintextRelay(c: PlaintextRelayChoice, a: Socket, b: Socket, opts?: RelayOptions): PlaintextRelay {
  const why = c.kind === "js" ? { reason: "configured" as const } : tryKernel(c, a, b, opts);
  if ("relay" in why) {
    c.used("kernel");
    return why.relay;
  }
  c.used("js", why);
  const relay = new Relay(a, b, opts);
  a.resume();
  b.resume();
  return { relay: "js", done: relay.done, abort: (reason) => relay.abort(reason) };
}

function tryKernel(c: PlaintextRelayChoice, a: Socket, b: Socket, opts: RelayOptions | undefined): { relay: SpliceSocketRelay } | JsRelayWhy {
  const fds = c.extraFds(SPLICE_EXTRA_FDS);
  if (fds === undefined) return { reason: "fd_budget" };
  const pipes = c.pipes();
  if (pipes === undefined) {
    fds();
    return { reason: "pipe_budget" };
  }
  const release = (): void => {
    fds();
    pipes.release();
  };
  let relay: SpliceSocketRelay | undefined;
  try {
    relay = SpliceSocketRelay.start(a, b, opts, pipes.size);
  } catch (err) {
    release();
    const code = (err as NodeJS.ErrnoException).code;
    const error = err instanceof Error ? err : new Error(errorMessage(err));
    return { reason: isFdExhaustion(code) ? "fd_exhausted" : "splice_failed", error, ...(code !== undefined ? { code } : {}) };
  }
  if (relay === undefined) {
    release();
    return { reason: "not_handed_over" };
  }
  void relay.done.finally(release);
  return { relay };
}
