import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  ApiError,
  ObjectStore,
  jsonPatch,
  matchesFields,
  matchesLabels,
  mergePatch,
  parseFieldSelector,
  parseLabelSelector,
  resourceInfo,
  strategicMergePatch,
  type StoredEvent,
} from "../harness/fake-kube/index.js";

// The fake's pure parts: selector grammar, patch algebra, store bookkeeping.

describe("label selectors", () => {
  const labels = { app: "web", tier: "front", "istio.io/dataplane-mode": "ambient", n: "7" };
  const cases: [string, boolean][] = [
    ["", true],
    ["app=web", true],
    ["app = web", true],
    ["app==web", true],
    ["app=db", false],
    ["app!=db", true],
    ["missing!=x", true],
    ["app in (db,web)", true],
    ["app in (db)", false],
    ["missing in (x)", false],
    ["app notin (db)", true],
    ["app notin (web, db)", false],
    ["missing notin (x)", true],
    ["tier", true],
    ["missing", false],
    ["!missing", true],
    ["! tier", false],
    ["istio.io/dataplane-mode=ambient,app in (web),!missing", true],
    ["app=web,tier=back", false],
    ["n>5", true],
    ["n<5", false],
    ["app=", false],
    ["missing=", false],
  ];
  it.each(cases)("%j matches: %s", (sel, want) => {
    expect(matchesLabels(parseLabelSelector(sel), labels)).toBe(want);
  });

  it.each(["app in web", "app=(x)", "=x", "app in ()", "app=web=x", "-bad=x", "app=v@l"])("rejects %j with a 400", (sel) => {
    try {
      parseLabelSelector(sel);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ApiError);
      expect((err as ApiError).httpStatus).toBe(400);
    }
  });

  it("!= is the negation of = and notin of in, for any labels", () => {
    const value = fc.constantFrom("a", "b", "c");
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom("k", "l"), value), value, (ls, v) => {
        expect(matchesLabels(parseLabelSelector(`k!=${v}`), ls)).toBe(!matchesLabels(parseLabelSelector(`k=${v}`), ls));
        expect(matchesLabels(parseLabelSelector(`k notin (${v},z)`), ls)).toBe(!matchesLabels(parseLabelSelector(`k in (${v},z)`), ls));
        expect(matchesLabels(parseLabelSelector("!k"), ls)).toBe(!matchesLabels(parseLabelSelector("k"), ls));
      }),
    );
  });
});

describe("field selectors", () => {
  const pods = resourceInfo("pods");
  const p = { metadata: { name: "a,b", namespace: "ns" }, spec: { nodeName: "n1" }, status: { phase: "Running" } };
  it("compares the resource's fields; unset booleans read false", () => {
    expect(matchesFields(parseFieldSelector("spec.nodeName=n1,status.phase==Running", pods), p)).toBe(true);
    expect(matchesFields(parseFieldSelector("spec.nodeName!=n1", pods), p)).toBe(false);
    expect(matchesFields(parseFieldSelector("spec.hostNetwork=false", pods), p)).toBe(true);
    expect(matchesFields(parseFieldSelector("status.podIP=", pods), p)).toBe(true);
    expect(matchesFields(parseFieldSelector("metadata.name=a\\,b", pods), p)).toBe(true);
  });
  it("rejects fields the resource does not support", () => {
    expect(() => parseFieldSelector("spec.nodeName=n1", resourceInfo("namespaces"))).toThrow(/field label not supported: spec.nodeName/);
    expect(() => parseFieldSelector("garbage", pods)).toThrow(ApiError);
  });
});

describe("patches", () => {
  it("merge patch follows RFC 7386's examples", () => {
    const cases: [unknown, unknown, unknown][] = [
      [{ a: "b" }, { a: "c" }, { a: "c" }],
      [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
      [{ a: "b" }, { a: null }, {}],
      [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
      [{ a: ["b"] }, { a: "c" }, { a: "c" }],
      [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
      [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
      [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
      [["a", "b"], ["c", "d"], ["c", "d"]],
      [{ a: "b" }, ["c"], ["c"]],
      [{ e: null }, { a: 1 }, { e: null, a: 1 }],
      [[1, 2], { a: "b", c: null }, { a: "b" }],
      [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
    ];
    for (const [target, patch, want] of cases) expect(mergePatch(target, patch)).toEqual(want);
  });

  it("a merge patch applied twice equals applied once", () => {
    const json = fc.jsonValue({ maxDepth: 3 });
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 3 }), json), fc.dictionary(fc.string({ maxLength: 3 }), json), (t, p) => {
        const once = mergePatch(t, p);
        expect(mergePatch(once, p)).toEqual(once);
      }),
    );
  });

  it("strategic merge: maps merge, lists replace, $patch directives", () => {
    const target = { metadata: { labels: { a: "1", b: "2" } }, spec: { containers: [{ name: "x" }], volumes: [{ name: "v" }] } };
    expect(strategicMergePatch(target, { metadata: { labels: { b: null, c: "3" } }, spec: { containers: [{ name: "y" }] } })).toEqual({
      metadata: { labels: { a: "1", c: "3" } },
      spec: { containers: [{ name: "y" }], volumes: [{ name: "v" }] },
    });
    expect(strategicMergePatch(target, { metadata: { labels: { $patch: "replace", z: "9" } } })).toMatchObject({ metadata: { labels: { z: "9" } } });
    expect(strategicMergePatch(target, { spec: { $patch: "delete" } })).toEqual({ metadata: target.metadata });
  });

  it("JSON patch implements RFC 6902 operations and is all-or-nothing", () => {
    const doc = { a: { b: [1, 2, 3] }, "x/y": 1, "m~n": 2 };
    expect(
      jsonPatch(doc, [
        { op: "add", path: "/a/b/1", value: 9 },
        { op: "add", path: "/a/b/-", value: 4 },
        { op: "remove", path: "/a/b/0" },
        { op: "replace", path: "/x~1y", value: 5 },
        { op: "move", from: "/m~0n", path: "/moved" },
        { op: "copy", from: "/a/b", path: "/copy" },
        { op: "test", path: "/copy", value: [9, 2, 3, 4] },
      ]),
    ).toEqual({ a: { b: [9, 2, 3, 4] }, "x/y": 5, moved: 2, copy: [9, 2, 3, 4] });
    expect(doc).toEqual({ a: { b: [1, 2, 3] }, "x/y": 1, "m~n": 2 });
    expect(() => jsonPatch(doc, [{ op: "remove", path: "/nope" }])).toThrow(/does not exist/);
    expect(() => jsonPatch(doc, [{ op: "replace", path: "/a/b/7", value: 1 }])).toThrow(/out of range/);
    expect(() => jsonPatch(doc, [{ op: "test", path: "/x~1y", value: 2 }])).toThrow(/test operation failed/);
    expect(() => jsonPatch(doc, { op: "add" })).toThrow(/array/);
  });
});

describe("object store", () => {
  function recording(store: ObjectStore): StoredEvent[] {
    const evs: StoredEvent[] = [];
    store.subscribe((e) => evs.push(e));
    return evs;
  }

  it("assigns one global, increasing resourceVersion; a no-op write changes nothing", () => {
    const s = new ObjectStore();
    const evs = recording(s);
    const ns = s.create("namespaces", { metadata: { name: "a" } });
    const p = s.create("pods", { metadata: { name: "p", namespace: "a" }, spec: { nodeName: "n" } });
    expect([ns.metadata.resourceVersion, p.metadata.resourceVersion, s.resourceVersion]).toEqual(["1", "2", "2"]);
    expect(p.metadata.generation).toBe(1);
    expect(s.update("pods", p).metadata.resourceVersion).toBe("2");
    expect(evs.map((e) => e.type)).toEqual(["ADDED", "ADDED"]);
    const moved = s.mutate("pods", "p", "a", (o) => {
      (o["spec"] as Record<string, unknown>)["nodeName"] = "m";
    });
    expect(moved.metadata).toMatchObject({ resourceVersion: "3", generation: 2, uid: p.metadata.uid });
    const relabelled = s.mutate("pods", "p", "a", (o) => {
      o.metadata.labels = { x: "y" };
    });
    expect(relabelled.metadata.generation).toBe(2);
    expect(() => s.update("pods", p)).toThrow(/has been modified/);
  });

  it("generateName, name validation and duplicates", () => {
    const s = new ObjectStore();
    const g = s.create("pods", { metadata: { generateName: "web-", namespace: "d" } });
    expect(g.metadata.name).toMatch(/^web-[a-z0-9]{5}$/);
    expect(() => s.create("pods", { metadata: { name: "Bad_Name", namespace: "d" } })).toThrow(/RFC 1123/);
    expect(() => s.create("pods", { metadata: { name: "x" } })).toThrow(/namespace is required/);
    s.create("pods", { metadata: { name: "x", namespace: "d" } });
    expect(() => s.create("pods", { metadata: { name: "x", namespace: "d" } })).toThrow(/already exists/);
    s.create("pods", { metadata: { name: "x", namespace: "e" } });
    expect(s.list("pods").map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).toEqual(["d/web-" + g.metadata.name!.slice(4), "d/x", "e/x"]);
  });

  it("history is bounded: resuming before its start is Expired (410)", () => {
    const s = new ObjectStore({ maxHistory: 3 });
    for (const n of ["a", "b", "c", "d", "e"]) s.create("namespaces", { metadata: { name: n } });
    expect(s.eventsSince(2).map((e) => e.rv)).toEqual([3, 4, 5]);
    expect(s.eventsSince(5)).toEqual([]);
    try {
      s.eventsSince(1);
      expect.unreachable();
    } catch (err) {
      expect((err as ApiError).toStatus()).toMatchObject({ code: 410, reason: "Expired", message: "too old resource version: 1 (2)" });
    }
    s.compact();
    expect(() => s.eventsSince(5)).toThrow(/too old/);
    expect(s.eventsSince(6)).toEqual([]);
  });

  it("deleting a namespace marks it Terminating, deletes its contents, then itself", () => {
    const s = new ObjectStore();
    s.create("namespaces", { metadata: { name: "a" } });
    s.create("pods", { metadata: { name: "p", namespace: "a" } });
    s.create("services", { metadata: { name: "svc", namespace: "a" } });
    s.create("pods", { metadata: { name: "p", namespace: "b" } });
    const evs = recording(s);
    s.delete("namespaces", "a");
    expect(evs.map((e) => `${e.type} ${e.resource} ${e.object.metadata.name}`)).toEqual([
      "MODIFIED namespaces a",
      "DELETED pods p",
      "DELETED services svc",
      "DELETED namespaces a",
    ]);
    expect(evs[0]!.object["status"]).toEqual({ phase: "Terminating" });
    expect(s.list("pods").map((p) => p.metadata.namespace)).toEqual(["b"]);
  });

  it("a service keeps its allocated ClusterIP across an update that omits it", () => {
    const s = new ObjectStore();
    const svc = s.create("services", { metadata: { name: "web", namespace: "d" }, spec: { ports: [{ port: 80 }] } });
    const ip = (svc["spec"] as { clusterIP: string }).clusterIP;
    const upd = s.update("services", { metadata: { name: "web", namespace: "d", labels: { a: "b" } }, spec: { ports: [{ port: 81 }] } });
    expect((upd["spec"] as { clusterIP: string }).clusterIP).toBe(ip);
    const other = s.create("services", { metadata: { name: "db", namespace: "d" } });
    expect((other["spec"] as { clusterIP: string }).clusterIP).not.toBe(ip);
  });
});
