import type { Socket } from "node:net";
import { Relay, type RelayOptions, type RelayResult } from "./relay.js";
import { SpliceSocketRelay } from "./splice-relay.js";

// The one seam between a plaintext TCP pair (passthrough, inbound 15006) and the relay that
// copies it: in the kernel (splice) or in JS. ZTUNNEL_PLAINTEXT_RELAY picks; a pair the kernel
// relay cannot take (bytes queued in Node, no fds left) goes to the JS relay.

export type PlaintextRelayKind = "splice" | "js";

export interface PlaintextRelay {
  readonly done: Promise<RelayResult>;
  abort(reason?: Error): void;
}

/** Starts relaying; with the JS relay, both sockets' reading is resumed here. */
export function startPlaintextRelay(kind: PlaintextRelayKind, a: Socket, b: Socket, opts?: RelayOptions): PlaintextRelay {
  if (kind === "splice") {
    const spliced = SpliceSocketRelay.start(a, b, opts);
    if (spliced !== undefined) return spliced;
  }
  const relay = new Relay(a, b, opts);
  a.resume();
  b.resume();
  return relay;
}
