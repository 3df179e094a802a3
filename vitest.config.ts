import { defineConfig } from "vitest/config";

// Two projects: pure logic runs in parallel; anything touching namespaces, iptables or the
// native addon runs serially in forked processes so a native crash fails one file, not the run.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          // Quiet by default: the output shows results, not log lines. A test that asserts on
          // logs injects a capturing logger (test/fixtures/log-capture.ts).
          env: { LOG_LEVEL: "silent" },
          pool: "threads",
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: "privileged",
          include: ["test/privileged/**/*.test.ts"],
          pool: "forks",
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
