import { writeNetSysctl } from "../../native/index.js";
import { errorMessage } from "../../shared/errors.js";

// Rolling upgrades lose nothing (issue 16 item 5): with net.ipv4.tcp_migrate_req=1 in a pod's
// netns, when the old ztunnel closes its SO_REUSEPORT listeners the kernel moves the
// connections still waiting in their accept queues (and half-open requests) to the new
// ztunnel's listener on the same port instead of resetting them. The sysctl is per netns, so
// it is set in each pod's netns when the pod is added; setting it again is harmless.
// Written in-process through the pod's netns fd: spawning nsenter + sysctl per pod forked the
// whole ztunnel each time (~3.7 ms per Add, 4x the rest of the Add→Ack path in the scale bench).

export type NetnsPreparer = (netnsFd: number) => Promise<void>;

export class MigrateReqError extends Error {}

export function enableMigrateReq(): NetnsPreparer {
  return (netnsFd) => {
    try {
      writeNetSysctl(netnsFd, "ipv4/tcp_migrate_req", "1");
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(new MigrateReqError(`setting net.ipv4.tcp_migrate_req=1 in the pod's netns failed: ${errorMessage(err)}`));
    }
  };
}
