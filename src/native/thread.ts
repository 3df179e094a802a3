import { native } from "./binding.js";

/**
 * Names the calling thread as the kernel shows it (/proc/<pid>/task/<tid>/comm, `top -H`,
 * perf): at most 15 bytes, refused rather than cut. Node 20 leaves every worker thread "node".
 */
export function setThreadName(name: string): void {
  native.setThreadName(name);
}
