import { execFile } from "node:child_process";
import { errorMessage } from "../../shared/errors.js";

// Rolling upgrades lose nothing (issue 16 item 5): with net.ipv4.tcp_migrate_req=1 in a pod's
// netns, when the old ztunnel closes its SO_REUSEPORT listeners the kernel moves the
// connections still waiting in their accept queues (and half-open requests) to the new
// ztunnel's listener on the same port instead of resetting them. The sysctl is per netns, so
// it is set in each pod's netns when the pod is added; setting it again is harmless.

export type NetnsPreparer = (netnsFd: number) => Promise<void>;

export class MigrateReqError extends Error {}

export function enableMigrateReq(pid: number = process.pid, timeoutMs = 5_000): NetnsPreparer {
  return (netnsFd) =>
    new Promise((resolve, reject) => {
      execFile("nsenter", [`--net=/proc/${pid}/fd/${netnsFd}`, "sysctl", "-q", "-w", "net.ipv4.tcp_migrate_req=1"], { timeout: timeoutMs }, (err, _out, stderr) => {
        if (err === null) resolve();
        else reject(new MigrateReqError(`setting net.ipv4.tcp_migrate_req=1 in the pod's netns failed: ${stderr.trim() || errorMessage(err)}`));
      });
    });
}
