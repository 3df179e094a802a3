// The node/V8 flags ztunnel runs with, defined once. The image runs dist/src/ztunnel/main.js
// through its shebang (`#!/usr/bin/env -S node <flags>`, kept equal to this list by
// test/unit/ztunnel-node-flags.test.ts); the test fixtures, the bench and the demo spawn
// `node ...ztunnelNodeArgv(main)`, so every ztunnel starts the way the DaemonSet starts it.
// These must be on the command line: V8 reads them when it creates the platform, before any
// isolate exists (v8.setFlagsFromString('--single-threaded-gc') at run time crashes the worker
// isolates created afterwards).
//
// --single-threaded-gc: V8 otherwise gives every isolate (the main thread and each proxy
// worker) parallel scavenges and concurrent marking on helper threads. A node has few cores
// shared with its pods, and the workers already keep them busy relaying: the helper threads
// compete with the workers for the same cores, and their hand-offs cost more than the little
// GC work they take over (workers' heaps are small; relayed bytes live in ArrayBuffers outside
// them). Each isolate collects its own garbage on its own thread instead.

export const ZTUNNEL_NODE_FLAGS: readonly string[] = ["--single-threaded-gc"];

/** The shebang line of src/ztunnel/main.ts: runs node with ZTUNNEL_NODE_FLAGS. */
export function ztunnelShebang(): string {
  return `#!/usr/bin/env -S node ${ZTUNNEL_NODE_FLAGS.join(" ")}`;
}

/**
 * Arguments for `process.execPath` that start ztunnel's `main` as the image does; `extra`
 * (profiling flags such as --cpu-prof) go after ZTUNNEL_NODE_FLAGS, before the script.
 */
export function ztunnelNodeArgv(main: string, extra: readonly string[] = []): string[] {
  return [...ZTUNNEL_NODE_FLAGS, ...extra, main];
}

/** ZTUNNEL_NODE_FLAGS this process was not started with (node's own execArgv). */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  return ZTUNNEL_NODE_FLAGS.filter((f) => !execArgv.includes(f));
}
