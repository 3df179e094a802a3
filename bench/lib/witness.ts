import type { Mesh } from "../../test/fixtures/ztunnel-e2e-cluster.js";
import { BenchError } from "./errors.js";

// A figure of a path through ztunnel counts only if that ztunnel really carried the traffic:
// its config_dump connection counter for the direction moved during the run. Workers flush
// their counters to the main thread about once a second, so a short run is given a bounded
// wait for the flush instead of being judged at once.

export interface WitnessAt {
  node: number;
  direction: "inbound" | "outbound";
}

export const WITNESS_WAIT_MS = 3_000;

/** Reads the counter now; the returned check (run after the traffic) waits for it to move. */
export async function witness(mesh: Pick<Mesh, "configDump">, at: WitnessAt | undefined, waitMs = WITNESS_WAIT_MS): Promise<() => Promise<void>> {
  if (at === undefined) return async () => undefined;
  const opened = async (): Promise<number> => (await mesh.configDump(at.node)).counters[at.direction].opened;
  const before = await opened();
  return async () => {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const now = await opened();
      if (now > before) return;
      if (Date.now() >= deadline) {
        throw new BenchError(`traffic did not go through ztunnel: node ${at.node}'s ${at.direction} connection counter stayed at ${now} for ${waitMs / 1000} s after the run`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  };
}
