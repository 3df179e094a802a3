import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { unmount } from "../../src/demo/podman.js";
import { describePrivileged } from "../harness/privileged.js";

// The podman demo's teardown unmounts what podman left under its dir, deepest first. A lazy
// unmount of a parent takes its children along, and podman may unmount things itself: a mount
// that is already gone when its turn comes is success, not "umount: not mounted" → exit 1.

function mounted(path: string): boolean {
  return readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === path);
}

describePrivileged("demo teardown: unmounting is idempotent", () => {
  let dir = "";
  afterEach(() => {
    for (const p of [join(dir, "a", "b"), join(dir, "a")]) if (mounted(p)) execFileSync("umount", ["-l", p]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("a mount already gone (never mounted, or taken along by its parent) is success; a mounted one is unmounted", async () => {
    dir = mkdtempSync(join(tmpdir(), "demo-umount-"));
    const a = join(dir, "a");
    const b = join(a, "b");
    mkdirSync(a);
    expect(await unmount(a)).toBeUndefined();
    execFileSync("mount", ["-t", "tmpfs", "tmpfs", a]);
    mkdirSync(b);
    execFileSync("mount", ["-t", "tmpfs", "tmpfs", b]);
    expect(mounted(b)).toBe(true);
    // The parent's lazy unmount detaches the child as well.
    expect(await unmount(a)).toBeUndefined();
    expect(mounted(a)).toBe(false);
    expect(mounted(b)).toBe(false);
    expect(await unmount(b)).toBeUndefined();
    expect(await unmount(a)).toBeUndefined();
  });
});
