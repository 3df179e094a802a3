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
