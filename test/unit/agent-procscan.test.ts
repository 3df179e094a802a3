import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { podUidFromCgroup, scanPodNetns, startTimeFromStat } from "../../src/agent/netns/proc-scan.js";
import { FakeOpener, FakeRef } from "../fixtures/agent-fakes.js";

const UID_A = "0a1b2c3d-0000-4000-8000-00000000000a";
const UID_B = "0a1b2c3d-0000-4000-8000-00000000000b";

describe("netns discovery by /proc scan", () => {
  let root: string;
  const addrs = new Map<string, string[]>();

  function proc(pid: number, cgroup: string, start: number, netnsId: string, comm = "pause"): void {
    const d = join(root, String(pid));
    mkdirSync(join(d, "ns"), { recursive: true });
    writeFileSync(join(d, "cgroup"), cgroup);
    // comm with a space and a parenthesis: the parser must split after the last ")".
    writeFileSync(join(d, "stat"), `${pid} (${comm} x) S 1 ${pid} ${pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 ${start} 1000 10`);
    writeFileSync(join(d, "ns", "net"), netnsId);
  }

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "agent-proc-"));
    // Pod A: cgroupfs layout. An app process (younger) in the same netns, and an older process
    // in the HOST netns (a hostNetwork debug container) that must be skipped.
    proc(100, `12:pids:/kubepods/burstable/pod${UID_A}/abc\n0::/\n`, 5000, "netns-a");
    proc(101, `12:pids:/kubepods/burstable/pod${UID_A}/def\n`, 6000, "netns-a");
    proc(99, `12:pids:/kubepods/burstable/pod${UID_A}/ghi\n`, 10, "host");
    // Pod B: systemd layout (underscores). The oldest process sits in a netns that does not
    // hold the pod's IP (stale, e.g. a leftover), the next one is right.
    const sd = UID_B.replace(/-/g, "_");
    proc(200, `1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${sd}.slice/cri-containerd-1.scope\n`, 100, "stale");
    proc(201, `1:name=systemd:/kubepods.slice/kubepods-besteffort-pod${sd}.slice/cri-containerd-2.scope\n`, 200, "netns-b");
    // Noise: a non-pod process and a non-numeric entry.
    proc(300, "0::/user.slice\n", 1, "host");
    mkdirSync(join(root, "self"), { recursive: true });
    addrs.set(join(root, "200", "ns", "net"), ["10.9.9.9"]);
    addrs.set(join(root, "201", "ns", "net"), ["10.0.0.2", "fd00::2"]);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("extracts pod UIDs from both cgroup layouts", () => {
    expect(podUidFromCgroup(`4:pids:/kubepods/pod${UID_A}/x`)).toBe(UID_A);
    expect(podUidFromCgroup(`1:name=systemd:/kubepods-pod${UID_B.replace(/-/g, "_")}.slice`)).toBe(UID_B);
    expect(podUidFromCgroup("0::/machine.slice/libpod-abc.scope")).toBeUndefined();
    expect(startTimeFromStat("7 (a) b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 1")).toBe(4242);
  });

  it("finds each pod's netns: oldest process wins, host netns skipped, the netns must hold a pod IP", async () => {
    const opener = new FakeOpener();
    const host = new FakeRef("host");
    const hits = await scanPodNetns(
      [
        { uid: UID_A, ips: [] },
        { uid: UID_B, ips: ["10.0.0.2"] },
        { uid: "ffffffff-0000-4000-8000-000000000000", ips: [] },
      ],
      { procRoot: root, opener, hostNetns: host, addrsIn: async (p) => addrs.get(p) ?? [] },
    );
    expect([...hits.keys()].sort()).toEqual([UID_A, UID_B]);
    expect(hits.get(UID_A)?.pid).toBe(100);
    expect((hits.get(UID_A)?.netns as FakeRef).id).toBe("netns-a");
    expect(hits.get(UID_B)?.pid).toBe(201);
    // Only the two returned handles stay open: every rejected candidate was closed.
    expect(opener.openCount()).toBe(2);
  });

  it("finds nothing when the process list cannot be read", async () => {
    const hits = await scanPodNetns([{ uid: UID_A, ips: [] }], {
      procRoot: join(root, "missing"),
      opener: new FakeOpener(),
      hostNetns: undefined,
      addrsIn: async () => [],
    });
    expect(hits.size).toBe(0);
  });
});

describe("netns finder: persisted path first, then /proc", () => {
  it("uses a persisted path that still holds the pod's IP, else falls back to the scan, never the host netns", async () => {
    const { NetnsFinder } = await import("../../src/agent/netns/finder.js");
    const { fakePod } = await import("../fixtures/agent-fakes.js");
    const root = mkdtempSync(join(tmpdir(), "agent-finder-"));
    try {
      const d = join(root, "42");
      mkdirSync(join(d, "ns"), { recursive: true });
      writeFileSync(join(d, "cgroup"), `1:pids:/kubepods/pod${UID_A}/c\n`);
      writeFileSync(join(d, "stat"), "42 (pause) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7 0 0");
      writeFileSync(join(d, "ns", "net"), "scanned");
      const opener = new FakeOpener();
      opener.ids.set("/run/netns/saved", "saved");
      opener.ids.set("/run/netns/host", "host");
      const persisted = new Map<string, string>();
      const addrsOf = new Map<string, string[]>([
        ["saved", ["10.0.0.5"]],
        ["scanned", ["10.0.0.5"]],
      ]);
      const finder = new NetnsFinder({
        procRoot: root,
        opener,
        hostNetns: () => new FakeRef("host"),
        // The finder asks about a handle path; map it back to the fake identity it opened last.
        addrsIn: async (p) => {
          const ref = p.includes("/fd/") ? opener.opened.find((r) => p.endsWith(`/fd/${r.fd}`)) : undefined;
          return addrsOf.get(ref?.id ?? (p.endsWith("ns/net") ? "scanned" : "")) ?? [];
        },
        persisted: (uid) => persisted.get(uid),
      });
      const pod = fakePod(UID_A, { ips: ["10.0.0.5"] });
      persisted.set(UID_A, "/run/netns/saved");
      expect(await finder.find(pod)).toMatchObject({ origin: "/run/netns/saved" });
      addrsOf.set("saved", ["10.9.9.9"]); // the path now names another netns
      expect(await finder.find(pod)).toMatchObject({ origin: join(root, "42", "ns", "net") });
      persisted.set(UID_A, "/run/netns/host");
      addrsOf.set("host", ["10.0.0.5"]);
      expect(await finder.find(pod)).toMatchObject({ origin: join(root, "42", "ns", "net") });
      expect(await finder.find(fakePod("ffffffff-0000-4000-8000-000000000000"))).toBeUndefined();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
