import { describe } from "vitest";

// Privileged tests need root (namespaces, iptables, setns). Off CI they skip without root;
// on CI (CI set) a skip would hide a regression, so it fails instead.
export const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

export function assertCanRunPrivileged(): void {
  if (!isRoot && process.env.CI) {
    throw new Error("privileged test would be skipped on CI: run the suite as root");
  }
}

/** `describe` for tests that need root; skips locally without root, fails on CI. */
export function describePrivileged(name: string, fn: () => void): void {
  if (isRoot) {
    describe(name, fn);
    return;
  }
  if (process.env.CI) {
    describe(name, () => {
      assertCanRunPrivileged();
    });
    return;
  }
  describe.skip(name, fn);
}
