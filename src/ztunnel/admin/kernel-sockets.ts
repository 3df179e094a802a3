import { execFile } from "node:child_process";
import { AmbientError } from "../../shared/errors.js";
import { parseSs, type KernelSocket } from "./ss-parse.js";

// The kernel's view of a pod's TCP sockets, read from inside the pod's netns: `ss -tanemoi`
// (iproute2) run under `nsenter --net=<the pod's netns fd, via /proc/<our pid>/fd/<n>>`. The
// native layer has no sock_diag binding; ss speaks sock_diag itself and prints TCP_INFO, and
// its child process keeps our threads out of the pod netns entirely.

export class KernelSocketsError extends AmbientError {
  constructor(message: string, cause?: unknown) {
    super("KERNEL_SOCKETS_FAILED", message, cause === undefined ? undefined : { cause });
  }
}

export interface KernelView {
  readonly command: string;
  readonly sockets: KernelSocket[];
  /** Lines ss printed that did not parse (a newer iproute2 format). */
  readonly skipped: string[];
}

export async function readKernelSockets(netnsFd: number, timeoutMs = 5_000): Promise<KernelView> {
  const args = [`--net=/proc/${process.pid}/fd/${netnsFd}`, "ss", "-tanemoi"];
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile("nsenter", args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, out, errOut) => {
      if (err !== null) {
        reject(new KernelSocketsError(`nsenter ${args.join(" ")} failed (are nsenter and iproute2's ss installed?): ${errOut.trim() || err.message}`, err));
        return;
      }
      resolve(out);
    });
  });
  const { sockets, skipped } = parseSs(stdout);
  return { command: `nsenter ${args.join(" ")}`, sockets, skipped };
}
