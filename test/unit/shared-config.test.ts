import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { address, bool, checkNames, duration, helpText, integer, optional, path, readEnv, rejectMisspelled, variable, ValueError } from "../../src/shared/config/index.js";

class VarError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
  }
}
const fail = (v: string, m: string): VarError => new VarError(v, m);

describe("one parser per kind of value", () => {
  it.each([
    ["1h30m", 5_400_000],
    ["500ms", 500],
    ["1.5s", 1500],
    ["0", 0],
  ])("duration %s = %d ms", (raw, ms) => expect(duration()(raw)).toBe(ms));

  it.each(["10", "fast", "-1s", "1h30"])("duration %j is refused (no unit is not guessed)", (raw) => {
    expect(() => duration()(raw)).toThrow(ValueError);
  });

  it("a duration below its minimum is refused", () => {
    expect(() => duration(1)("0")).toThrow(/minimum/);
  });

  it.each([
    ["8000", { host: "127.0.0.1", port: 8000 }],
    [":8000", { host: "0.0.0.0", port: 8000 }],
    ["10.0.0.1:80", { host: "10.0.0.1", port: 80 }],
    ["[::1]:80", { host: "::1", port: 80 }],
    ["localhost:0", { host: "localhost", port: 0 }],
  ])("address %s", (raw, want) => expect(address("127.0.0.1")(raw)).toEqual(want));

  it.each(["localhost", "host.example:80", ":70000", "::1:80", "localhost:http"])("address %j is refused", (raw) => {
    expect(() => address("0.0.0.0")(raw)).toThrow(ValueError);
  });

  it("paths: absolute kept, relative resolved against the working directory, NUL refused", () => {
    expect(path("/a/b")).toBe("/a/b");
    expect(path("a/b")).toBe(resolve("a/b"));
    expect(() => path("a\0b")).toThrow(ValueError);
  });

  it("booleans", () => {
    for (const t of ["true", "1", "YES", "on"]) expect(bool(t)).toBe(true);
    for (const f of ["false", "0", "no", "Off"]) expect(bool(f)).toBe(false);
    expect(() => bool("maybe")).toThrow(ValueError);
  });

  it("integers, decimal or hex, within range", () => {
    expect(integer(1, 10)("0xa")).toBe(10);
    expect(() => integer(1, 10)("11")).toThrow(/out of range/);
    expect(() => integer(1, 10)("1.5")).toThrow(/not an integer/);
  });
});

describe("a schema read from the environment", () => {
  const schema = {
    THING_TIMEOUT: variable("how long", duration(), 1000, "1s"),
    THING_ADDR: variable("where", address("0.0.0.0"), { host: "0.0.0.0", port: 1 }),
    THING_FILE: optional("which file", path),
  } as const;
  const family = { prefixes: ["THING_"], alsoRead: ["LOG_LEVEL"] };

  it("defaults what is unset or empty and parses the rest", () => {
    const v = readEnv(schema, { THING_TIMEOUT: " ", THING_ADDR: ":9" }, fail);
    expect(v).toEqual({ THING_TIMEOUT: 1000, THING_ADDR: { host: "0.0.0.0", port: 9 }, THING_FILE: undefined });
  });

  it("a bad value fails naming the variable", () => {
    expect(() => readEnv(schema, { THING_TIMEOUT: "soon" }, fail)).toThrow(/^THING_TIMEOUT: "soon" is not a duration/);
  });

  it("misspelled names get the name they meant; unknown names of our prefix are listed", () => {
    const report = checkNames(schema, family, { THING_TIMEOUTS: "1s", thing_addr: ":1", THING_OTHER_STUFF: "x", LOG_LEVEL: "info", HOME: "/" });
    expect(report.misspelled).toEqual([
      { name: "THING_TIMEOUTS", hint: "THING_TIMEOUT" },
      { name: "thing_addr", hint: "THING_ADDR" },
    ]);
    expect(report.unknown).toEqual(["THING_OTHER_STUFF"]);
    expect(() => rejectMisspelled(report, fail)).toThrow(/THING_TIMEOUTS: .*did you mean THING_TIMEOUT\?/);
  });

  it("help shows every variable, its default and its line of doc", () => {
    const help = helpText("thing", schema, family);
    expect(help).toContain("  THING_TIMEOUT  (default: 1s)\n      how long");
    expect(help).toContain("  THING_ADDR  (default: 0.0.0.0:1)");
    expect(help).toContain("  THING_FILE  (default: unset)");
    expect(help).toContain("Also read: LOG_LEVEL.");
  });
});
