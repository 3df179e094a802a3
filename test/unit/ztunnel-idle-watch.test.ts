import { describe, expect, it } from "vitest";
import { IdleWatch, type IdleWatched } from "../../src/ztunnel/proxy/idle-watch.js";

/** An entry whose activity the test moves; resolves `expired` when the watch ends it. */
function entry(): IdleWatched & { lastActivityMs: number; expired: Promise<number> } {
  let fire: (at: number) => void = () => undefined;
  const expired = new Promise<number>((r) => (fire = r));
  return { lastActivityMs: Date.now(), expired, idleExpired: () => fire(Date.now()) };
}

describe("IdleWatch: idle timeouts of one length on one timer", () => {
  it("ends an entry once it was idle for the whole length, and not before", async () => {
    const w = IdleWatch.of(40);
    const idle = entry();
    const started = idle.lastActivityMs;
    w.add(idle);
    const at = await idle.expired;
    expect(at - started).toBeGreaterThanOrEqual(40);
    expect(w.size).toBe(0);
  });

  it("keeps an entry with recent activity, and forgets a deleted one", async () => {
    const w = IdleWatch.of(60);
    const busy = entry();
    const deleted = entry();
    const idle = entry();
    w.add(busy);
    w.add(deleted);
    w.add(idle);
    w.delete(deleted);
    const keepBusy = setInterval(() => (busy.lastActivityMs = Date.now()), 5);
    await idle.expired;
    clearInterval(keepBusy);
    let deletedFired = false;
    void deleted.expired.then(() => (deletedFired = true));
    expect(w.size).toBe(1); // the busy one is still watched
    w.delete(busy);
    expect(w.size).toBe(0);
    await new Promise((r) => setTimeout(r, 2 * w.tickMs));
    expect(deletedFired).toBe(false);
  });

  it("shares one watch per length", () => {
    expect(IdleWatch.of(1234)).toBe(IdleWatch.of(1234));
    expect(IdleWatch.of(1234)).not.toBe(IdleWatch.of(4321));
    expect(IdleWatch.of(3_600_000).tickMs).toBe(1_000);
    expect(IdleWatch.of(16).tickMs).toBe(5);
  });
});
