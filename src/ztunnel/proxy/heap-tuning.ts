import { setFlagsFromString } from "node:v8";

// V8 heap sizing for the proxy workers. Flags are process-wide: every worker isolate created
// after tuneHeap() reads them (measured in the commits that set them, 7069d77 and 7637099).
// Flags V8 only reads when it starts (--single-threaded-gc) cannot be set here: they are on
// ztunnel's command line, src/ztunnel/node-flags.ts.
//
// Growing factor. Every byte a worker relays passes through a fresh ArrayBuffer (Node
// allocates one per socket read and per TLS record), and a worker's own heap is small (~8 MiB
// live). With V8's default factor the old-generation limit sat so close to the live size that
// incremental marking restarted right after each full GC: at 2 Gbit/s a worker ran 10-17
// mark-compacts a second, ~30% of ztunnel CPU with the marking threads. A factor of 5 lets the
// heap grow to a few times its live size between full GCs; the live size, the heap maximum and
// the memory reducer (which shrinks an idle heap) are unchanged.
//
// Semi-space. V8 grows a busy isolate's young generation up to 2 x 16 MiB and keeps it: after
// a burst of connection setup each worker held ~14 MiB more RSS, most of the 40 KiB per idle
// HBONE connection the bench measured. Relayed data lives outside the young generation
// (ArrayBuffers) and the objects per chunk die young, so a small semi-space costs little CPU.
// But every scavenge stops the worker for ~0.4-0.6 ms, which lands on whichever message is in
// flight: at 2 MiB a worker relaying 1 KiB request/responses scavenged every ~70 ms, enough to
// show in the p99. 4 MiB halves that for a few MiB more per busy worker (a fixed cost, not per
// connection; the bench's idle row spreads it over its 1,000 connections).
//
// Minimum semi-space. V8 starts a young generation at 1 MiB, grows it only while many objects
// survive, and shrinks it again when allocation slows: a worker relaying small messages, whose
// objects all die young, mostly runs below the maximum, scavenging up to four times as often
// (a worker after the bench's connection-rate row: every ~38 ms). Most of each scavenge's pause
// is freeing the backing stores of the ArrayBuffers that died (one per socket read; V8 frees
// them on the worker under --single-threaded-gc), so a pause grows with the bytes allocated
// since the last one and a larger young generation means fewer, longer pauses: fewer round
// trips hit. Starting and staying at the maximum costs an idle worker the ~6 MiB a busy one
// grows to anyway.

/** The old-generation limit after a full GC: live size x (1 + percent / 100). */
export const HEAP_GROWING_PERCENT = 400;
/** Upper bound of one young-generation semi-space, MiB. */
export const MAX_SEMI_SPACE_MIB = 4;
/** Lower bound of one young-generation semi-space, MiB (V8 neither starts nor shrinks below it). */
export const MIN_SEMI_SPACE_MIB = MAX_SEMI_SPACE_MIB;

/** Call before the workers start. */
export function tuneHeap(): void {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  setFlagsFromString(`--max-semi-space-size=${MAX_SEMI_SPACE_MIB}`);
  setFlagsFromString(`--min-semi-space-size=${MIN_SEMI_SPACE_MIB}`);
}
