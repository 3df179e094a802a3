// Opt-in profiling of the ztunnels a bench row starts: BENCH_ZTUNNEL_NODE_ARGS holds extra
// node flags, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" (V8 profiles of the main thread and
// every worker, written on a clean exit) or "--perf-basic-prof" (JIT symbols for `perf`). With
// any set, the rows stop their ztunnels with SIGTERM instead of SIGKILL so the profiles get
// written. Profiling changes the figures: use it to find where time goes, not for results.

export const ZTUNNEL_NODE_ARGS_ENV = "BENCH_ZTUNNEL_NODE_ARGS";

export function ztunnelNodeArgs(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env[ZTUNNEL_NODE_ARGS_ENV] ?? "").split(" ").filter((a) => a !== "");
}
