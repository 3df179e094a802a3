import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { native, type Poller, type Splicer } from "../../src/native/binding.js";

// Every function the addon exports, with its arguments in order: a kind, and a valid value to
// put in that position while a later argument is being tested. Each argument is read and
// checked before any syscall, so these calls have no effect. A new export without an entry
// here fails the first test.
type Kind = "int" | "bool" | "string" | "bytes" | "function" | "object" | "poller" | "splicer";
type Arg = { name: string; kind: Kind };

/** spliceStart and spliceBorrow take the same arguments (they differ in who owns the fds). */
const SPLICE_START_ARGS: Arg[] = [
  { name: "fdA", kind: "int" },
  { name: "fdB", kind: "int" },
  { name: "prefixAtoB", kind: "bytes" },
  { name: "prefixBtoA", kind: "bytes" },
  { name: "pipeSize", kind: "int" },
  { name: "callback", kind: "function" },
];

const SIGNATURES: Record<string, Arg[]> = {
  init: [{ name: "makeError", kind: "function" }],
  netnsOpen: [{ name: "path", kind: "string" }],
  netnsCheck: [{ name: "fd", kind: "int" }],
  fdIdentity: [{ name: "fd", kind: "int" }],
  threadNetnsIdentity: [],
  dupFd: [{ name: "fd", kind: "int" }],
  closeFd: [{ name: "fd", kind: "int" }],
  setThreadName: [{ name: "name", kind: "string" }],
  netnsCookieOf: [{ name: "netnsFd", kind: "int" }],
  netnsWriteSysctl: [
    { name: "netnsFd", kind: "int" },
    { name: "name", kind: "string" },
    { name: "value", kind: "string" },
  ],
  benchSetnsRoundTrip: [
    { name: "netnsFd", kind: "int" },
    { name: "count", kind: "int" },
  ],
  createSocket: [
    { name: "netnsFd", kind: "int" },
    { name: "spec", kind: "object" },
  ],
  originalDst: [{ name: "fd", kind: "int" }],
  netnsCookie: [{ name: "fd", kind: "int" }],
  getSocketMark: [{ name: "fd", kind: "int" }],
  isListening: [{ name: "fd", kind: "int" }],
  seqListen: [
    { name: "name", kind: "string" },
    { name: "abstract", kind: "bool" },
    { name: "backlog", kind: "int" },
    { name: "mode", kind: "int" },
  ],
  seqConnect: [
    { name: "name", kind: "string" },
    { name: "abstract", kind: "bool" },
  ],
  seqAccept: [{ name: "fd", kind: "int" }],
  seqSend: [
    { name: "fd", kind: "int" },
    { name: "data", kind: "bytes" },
    { name: "passFd", kind: "int" },
  ],
  seqRecv: [
    { name: "fd", kind: "int" },
    { name: "maxDatagram", kind: "int" },
  ],
  peerCred: [{ name: "fd", kind: "int" }],
  pollStart: [
    { name: "fd", kind: "int" },
    { name: "callback", kind: "function" },
  ],
  pollUpdate: [
    { name: "poller", kind: "poller" },
    { name: "events", kind: "int" },
  ],
  pollRef: [
    { name: "poller", kind: "poller" },
    { name: "ref", kind: "bool" },
  ],
  pollClose: [{ name: "poller", kind: "poller" }],
  spliceStart: SPLICE_START_ARGS,
  spliceBorrow: SPLICE_START_ARGS,
  spliceStats: [{ name: "splicer", kind: "splicer" }],
  spliceClose: [
    { name: "splicer", kind: "splicer" },
    { name: "reset", kind: "bool" },
  ],
};

// Values of the wrong JS type for each kind (each must be refused).
const WRONG: Record<Kind, unknown[]> = {
  int: ["3", true, null, {}, 3n],
  bool: [1, "true", null],
  string: [1, null, {}, Symbol("s")],
  bytes: ["abc", [1, 2], new Uint16Array(2), null],
  function: [{}, "f", null],
  object: [1, "spec", null],
  poller: [{}, 1, null, "poller"],
  splicer: [{}, 1, null, "splicer"],
};

const exported = Object.keys(native as unknown as Record<string, unknown>);
const call = (fn: string, args: unknown[]): unknown =>
  (native as unknown as Record<string, (...a: unknown[]) => unknown>)[fn]!(...args);

let poller: Poller;
let pollerFd = -1;
let splicer: Splicer;
let splicerOpen = false;

// A valid value for a position, used while a later argument is under test.
function valid(kind: Kind): unknown {
  switch (kind) {
    case "int":
      return -1;
    case "bool":
      return false;
    case "string":
      return "x";
    case "bytes":
      return new Uint8Array([1]);
    case "function":
      return () => {};
    case "object":
      return {};
    case "poller":
      return poller;
    case "splicer":
      return splicer;
  }
}

function expectTypeError(fn: string, args: unknown[], name: string, code: string): void {
  let thrown: unknown;
  try {
    call(fn, args);
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `${fn}(${args.map((a) => typeof a).join(", ")}) must throw`).toBeInstanceOf(TypeError);
  const e = thrown as TypeError & { code?: string };
  expect(e.code).toBe(code);
  // The message names the function and the argument, so a stack trace is not needed.
  expect(e.message).toContain(`${fn}: `);
  expect(e.message).toContain(name);
}

beforeAll(() => {
  // A real poller to stand in for the poller argument (a UDP socket in this netns, no privilege).
  pollerFd = native.createSocket(-1, { family: 4, type: "udp" });
  poller = native.pollStart(pollerFd, () => {});
  // A real splicer for the splicer argument: a relay between two unconnected TCP sockets,
  // which never becomes readable; closing it closes both.
  const tcpA = native.createSocket(-1, { family: 4, type: "tcp" });
  const tcpB = native.createSocket(-1, { family: 4, type: "tcp" });
  splicer = native.spliceStart(tcpA, tcpB, new Uint8Array(0), new Uint8Array(0), 0, () => {});
  splicerOpen = true;
});

afterAll(() => {
  if (pollerFd >= 0) native.pollClose(poller); // closes pollerFd too
  if (splicerOpen) native.spliceClose(splicer, false); // closes both fds
});

describe("native addon argument checks", () => {
  it("every export has a signature here (a new export must be added)", () => {
    expect(exported.length).toBeGreaterThan(20);
    expect([...exported].sort()).toEqual(Object.keys(SIGNATURES).sort());
    for (const name of exported) expect(typeof (native as unknown as Record<string, unknown>)[name]).toBe("function");
  });

  for (const [fn, sig] of Object.entries(SIGNATURES)) {
    if (sig.length === 0) continue;
    it(`${fn}: each missing argument is a TypeError naming it`, () => {
      for (let i = 0; i < sig.length; i++) {
        const args = sig.slice(0, i).map((a) => valid(a.kind));
        expectTypeError(fn, args, sig[i]!.name, "ERR_MISSING_ARGS");
      }
    });

    it(`${fn}: each wrong-typed argument is a TypeError naming it`, () => {
      for (let i = 0; i < sig.length; i++) {
        for (const bad of WRONG[sig[i]!.kind]) {
          const args = sig.map((a) => valid(a.kind));
          args[i] = bad;
          expectTypeError(fn, args, sig[i]!.name, "ERR_INVALID_ARG_TYPE");
        }
      }
    });
  }

  it("an explicit undefined counts as the wrong type, not as absent", () => {
    expectTypeError("dupFd", [undefined], "fd", "ERR_INVALID_ARG_TYPE");
  });

  it("integers out of range or with a fraction are RangeErrors naming the argument", () => {
    for (const bad of [1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31]) {
      expect(() => native.closeFd(bad)).toThrow(RangeError);
      expect(() => native.closeFd(bad)).toThrow(/closeFd: fd must be an integer/);
    }
  });

  it("createSocket checks the type of every spec field and names it", () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ family: "4", type: "tcp" }, "spec.family"],
      [{ family: 4, type: 6 }, "spec.type"],
      [{ family: 4, type: "tcp", mark: "1" }, "spec.mark"],
      [{ family: 4, type: "tcp", reusePort: 1 }, "spec.reusePort"],
      [{ family: 6, type: "tcp", v6Only: "yes" }, "spec.v6Only"],
      [{ family: 4, type: "tcp", keepAlive: 5 }, "spec.keepAlive"],
      [{ family: 4, type: "tcp", keepAlive: { idleSec: "1", intervalSec: 1, count: 1 } }, "spec.keepAlive.idleSec"],
      [{ family: 4, type: "tcp", userTimeoutMs: true }, "spec.userTimeoutMs"],
      [{ family: 4, type: "tcp", bind: "127.0.0.1:0" }, "spec.bind"],
      [{ family: 4, type: "tcp", bind: { address: 127, port: 0 } }, "spec.bind.address"],
      [{ family: 4, type: "tcp", listen: { backlog: "1" } }, "spec.listen.backlog"],
    ];
    for (const [spec, name] of cases) expectTypeError("createSocket", [-1, spec], name, "ERR_INVALID_ARG_TYPE");
  });

  it("a poller from another kind of value is refused even if it is an object", () => {
    expectTypeError("pollRef", [Object.create(null), true], "poller", "ERR_INVALID_ARG_TYPE");
  });
});
