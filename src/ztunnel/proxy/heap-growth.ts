import { setFlagsFromString } from "node:v8";

// V8's heap growth for the data path. Every byte a worker relays passes through a fresh
// ArrayBuffer (Node allocates one per socket read and per TLS record), and a worker's own heap
// is small (~8 MiB live). With V8's default growing factor the old-generation limit then sits
// so close to the live size that incremental marking restarts right after each full GC: at
// 2 Gbit/s a worker ran 10-17 mark-compacts a second, ~30% of ztunnel CPU with the marking
// threads (bench/README.md "Where the time goes"). A larger factor lets the heap grow to a
// few times its live size between full GCs; the live size, the heap maximum and the memory
// reducer (which shrinks an idle heap) are unchanged.

/** The old-generation limit after a full GC: live size x (1 + percent / 100). */
export const HEAP_GROWING_PERCENT = 400;

/** Process-wide (every worker isolate reads it too): call before the workers start. */
export function tuneHeapGrowth(percent: number = HEAP_GROWING_PERCENT): void {
  setFlagsFromString(`--heap-growing-percent=${percent}`);
}
