/**
 * Waits for an event the test cannot subscribe to: polls cond on the event loop until it holds;
 * throws naming `what` after timeoutMs (a generous bound against hangs, not a speed check).
 */
export async function waitUntil(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
