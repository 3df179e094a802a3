import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { unixRequest } from "../../cni-plugin/agent-client.js";
import { startPluginEventServer } from "../../src/agent/pluginevent/server.js";
import { levelFromEnv, rootLogger } from "../../src/shared/log.js";
import { captureLogs } from "../fixtures/log-capture.js";

const dir = mkdtempSync(join(tmpdir(), "agent-log-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("logging is injected and quiet in unit tests", () => {
  it("the unit project runs with LOG_LEVEL=silent, so the process root logs nothing", () => {
    expect(process.env.LOG_LEVEL).toBe("silent");
    expect(rootLogger().level).toBe("silent");
  });

  it("LOG_LEVEL names a level; anything else is info", () => {
    expect(levelFromEnv("debug")).toBe("debug");
    expect(levelFromEnv(" WARN ")).toBe("warn");
    expect(levelFromEnv("loud")).toBe("info");
    expect(levelFromEnv("")).toBe("info");
  });

  it("a component logs to the logger it is given (captured here)", async () => {
    const { log, lines } = captureLogs("info");
    const server = await startPluginEventServer({
      runDir: dir,
      handler: { onAdd: () => Promise.resolve({ outcome: "enrolled" }), onDel: () => Promise.resolve() },
      log,
    });
    try {
      expect((await unixRequest(server.socketPath, "POST", "/cmdadd", "{not json", 2000)).status).toBe(400);
    } finally {
      await server.close();
    }
    expect(lines().map((l) => l.msg)).toEqual(["listening for CNI plugin events", "bad CNI ADD event"]);
    expect(lines()[1]).toMatchObject({ level: 40 });
  });
});

describe("plugin event socket connection cap (issue 16 item 3, agent side)", () => {
  it("connections beyond the cap are closed at accept, warned once, and the socket serves again when load drops", async () => {
    const { connect } = await import("node:net");
    const { log, lines } = captureLogs("info");
    const capDir = mkdtempSync(join(tmpdir(), "agent-cap-"));
    const server = await startPluginEventServer({
      runDir: capDir,
      handler: { onAdd: () => Promise.resolve({ outcome: "enrolled" }), onDel: () => Promise.resolve() },
      log,
      maxConnections: 2,
    });
    const idle = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<import("node:net").Socket>((resolve, reject) => {
            const s = connect(server.socketPath, () => resolve(s));
            s.on("error", reject);
          }),
      ),
    );
    try {
      // The third is accepted by the kernel and closed by the server without an answer.
      const third = connect(server.socketPath);
      third.on("error", () => undefined);
      await new Promise<void>((resolve) => third.on("close", () => resolve()));
      expect(lines().filter((l) => l.msg === "plugin event socket at its connection cap; closing new connections")).toHaveLength(1);
      for (const s of idle) s.destroy();
      await expect.poll(async () => (await unixRequest(server.socketPath, "GET", "/healthz", undefined, 2000).catch(() => ({ status: 0 }))).status).toBe(200);
    } finally {
      for (const s of idle) s.destroy();
      await server.close();
      rmSync(capDir, { recursive: true, force: true });
    }
  });
});
