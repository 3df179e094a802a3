import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitUntil as until } from "../harness/wait.js";
import { CoreV1Api, ListWatch, Watch, makeInformer, type KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { FakeKubeServer, kubeConfigFor, type KubeObjectInput } from "../harness/fake-kube/index.js";

// client-node's informer (ListWatch) run for real against the fake: list, watch from the list's
// resourceVersion, resume after a dropped stream, relist after 410 Expired.

function pod(name: string, node: string, ns = "default", labels: Record<string, string> = {}): KubeObjectInput {
  return {
    metadata: { name, namespace: ns, labels },
    spec: { nodeName: node, containers: [{ name: "app", image: "busybox" }] },
    status: { phase: "Running", podIP: "10.244.0.9" },
  };
}

interface Recorder {
  events: string[];
  errors: unknown[];
  connects: number;
}

describe("fake kube API server with client-node informers", () => {
  let server: FakeKubeServer;
  let kc: KubeConfig;
  let core: CoreV1Api;
  let informer: ListWatch<V1Pod> | undefined;

  beforeEach(async () => {
    server = await FakeKubeServer.start();
    kc = kubeConfigFor(server);
    core = kc.makeApiClient(CoreV1Api);
    server.store.create("namespaces", { metadata: { name: "default" } });
    server.store.create("namespaces", { metadata: { name: "other" } });
  });

  afterEach(async () => {
    await informer?.stop();
    informer = undefined;
    // A stopped informer leaves no watch and, once its agents let go, no connection behind.
    await until(() => server.activeWatches() === 0, "watches closed after stop()");
    await until(() => server.openConnections === 0, "connections closed after stop()");
    await server.stop();
  });

  function nodeInformer(node: string): { inf: ListWatch<V1Pod>; rec: Recorder } {
    const fieldSelector = `spec.nodeName=${node}`;
    const inf = new ListWatch<V1Pod>(
      "/api/v1/pods",
      new Watch(kc),
      () => core.listPodForAllNamespaces({ fieldSelector }),
      false,
      undefined,
      fieldSelector,
    );
    const rec: Recorder = { events: [], errors: [], connects: 0 };
    inf.on("add", (p) => rec.events.push(`add ${p.metadata?.name} ${p.metadata?.resourceVersion}`));
    inf.on("update", (p) => rec.events.push(`update ${p.metadata?.name} ${p.metadata?.resourceVersion}`));
    inf.on("delete", (p) => rec.events.push(`delete ${p.metadata?.name}`));
    inf.on("error", (e) => rec.errors.push(e));
    inf.on("connect", () => rec.connects++);
    informer = inf;
    return { inf, rec };
  }

  it("sees add, update and delete of pods on its node only (fieldSelector spec.nodeName)", async () => {
    server.store.create("pods", pod("before", "node-a"));
    server.store.create("pods", pod("elsewhere", "node-b"));
    const { inf, rec } = nodeInformer("node-a");
    await inf.start();
    await server.waitForWatches(1, { resource: "pods" });
    expect(rec.events).toEqual([expect.stringMatching(/^add before /)]);

    const created = server.store.create("pods", pod("web", "node-a"));
    server.store.create("pods", pod("web", "node-b", "other"));
    await until(() => rec.events.length === 2, "add web");
    expect(rec.events[1]).toBe(`add web ${created.metadata.resourceVersion}`);

    const updated = server.store.mutate("pods", "web", "default", (p) => {
      p.metadata.labels = { app: "web" };
    });
    await until(() => rec.events.length === 3, "update web");
    expect(rec.events[2]).toBe(`update web ${updated.metadata.resourceVersion}`);
    expect(inf.get("web", "default")?.metadata?.labels).toEqual({ app: "web" });

    server.store.delete("pods", "web", "default");
    server.store.delete("pods", "web", "other");
    await until(() => rec.events.length === 4, "delete web");
    expect(rec.events[3]).toBe("delete web");
    expect(inf.list().map((p) => p.metadata?.name)).toEqual(["before"]);
    expect(rec.errors).toEqual([]);

    // Both the list and the watch carried the field selector.
    const calls = server.requests.filter((r) => r.resource === "pods");
    expect(calls.map((r) => [r.verb, r.query["fieldSelector"]])).toEqual([
      ["list", "spec.nodeName=node-a"],
      ["watch", "spec.nodeName=node-a"],
    ]);
  });

  it("makeInformer with the selector in the path watches with it too", async () => {
    const inf = makeInformer<V1Pod>(kc, "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb", () =>
      core.listNamespacedPod({ namespace: "default", labelSelector: "app=web" }),
    );
    informer = inf as unknown as ListWatch<V1Pod>;
    const seen: string[] = [];
    inf.on("add", (p) => seen.push(p.metadata?.name ?? ""));
    await inf.start();
    await server.waitForWatches(1);
    server.store.create("pods", pod("db", "node-a", "default", { app: "db" }));
    server.store.create("pods", pod("web", "node-a", "default", { app: "web" }));
    await until(() => seen.length > 0, "add web");
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual(["web"]);
  });

  it("resumes after dropWatches() and sees a change made while disconnected exactly once", async () => {
    server.store.create("pods", pod("a", "node-a"));
    const { inf, rec } = nodeInformer("node-a");
    await inf.start();
    await server.waitForWatches(1);
    const listRv = inf.latestResourceVersion();

    expect(server.dropWatches()).toBe(1);
    // Same tick: the stream is closed, the client cannot have re-watched yet.
    server.store.create("pods", pod("b", "node-a"));
    server.store.mutate("pods", "a", "default", (p) => {
      p.metadata.annotations = { touched: "yes" };
    });

    await until(() => rec.events.length === 3, "replayed events");
    await server.waitForWatches(1);
    const watches = server.requests.filter((r) => r.verb === "watch");
    expect(watches.map((w) => w.query["resourceVersion"])).toEqual([listRv, listRv]);
    // Only one list: the informer resumed the watch rather than relisting.
    expect(server.requests.filter((r) => r.verb === "list")).toHaveLength(1);

    server.store.delete("pods", "b", "default");
    await until(() => rec.events.length === 4, "delete b");
    await new Promise((r) => setTimeout(r, 50));
    expect(rec.events.map((e) => e.split(" ").slice(0, 2).join(" "))).toEqual(["add a", "add b", "update a", "delete b"]);
    expect(inf.get("a", "default")?.metadata?.annotations).toEqual({ touched: "yes" });
    expect(rec.errors).toEqual([]);
  });

  it("waits out a held watch outage and catches up on release", async () => {
    const { inf, rec } = nodeInformer("node-a");
    await inf.start();
    await server.waitForWatches(1);
    server.holdWatches();
    server.dropWatches();
    const since = server.nextSeq;
    await server.waitForRequest((r) => r.verb === "watch", { since });
    // The re-watch has arrived and is held; make changes meanwhile.
    server.store.create("pods", pod("late", "node-a"));
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.events).toEqual([]);
    expect(server.activeWatches()).toBe(0);
    server.releaseWatches();
    await until(() => rec.events.length === 1, "add late");
    expect(rec.events[0]).toMatch(/^add late /);
  });

  it("relists after compactHistory() + drop (410 Expired) and ends with the right cache", async () => {
    server.store.create("pods", pod("keep", "node-a"));
    server.store.create("pods", pod("gone", "node-a"));
    const { inf, rec } = nodeInformer("node-a");
    await inf.start();
    await server.waitForWatches(1);
    expect(rec.events.map((e) => e.split(" ").slice(0, 2).join(" "))).toEqual(["add gone", "add keep"]);
    rec.events.length = 0;

    server.dropWatches();
    server.store.delete("pods", "gone", "default");
    server.store.create("pods", pod("new", "node-a"));
    server.store.mutate("pods", "keep", "default", (p) => {
      p.metadata.labels = { v: "2" };
    });
    server.compactHistory();

    await until(() => server.requests.filter((r) => r.verb === "list").length === 2, "relist");
    await server.waitForWatches(1);
    await until(() => rec.events.length === 3, "relist events");
    // The resume attempt was answered with a 410 ERROR event; the informer relisted and watched anew.
    const watches = server.requests.filter((r) => r.verb === "watch");
    expect(watches).toHaveLength(3);
    expect(Number(watches[2]!.query["resourceVersion"])).toBeGreaterThan(Number(watches[1]!.query["resourceVersion"]));
    expect(rec.events.map((e) => e.split(" ").slice(0, 2).join(" ")).sort()).toEqual(["add new", "delete gone", "update keep"]);
    expect(inf.list().map((p) => p.metadata?.name).sort()).toEqual(["keep", "new"]);
    expect(inf.get("keep", "default")?.metadata?.labels).toEqual({ v: "2" });
    expect(rec.errors).toEqual([]);

    // And it keeps following live changes.
    server.store.create("pods", pod("after", "node-a"));
    await until(() => rec.events.length === 4, "add after");
    expect(rec.events[3]).toMatch(/^add after /);
  });

  it("an HTTP 410 on the re-watch makes the informer relist; a 500 on the list stops it with an error", async () => {
    server.store.create("pods", pod("a", "node-a"));
    const { inf, rec } = nodeInformer("node-a");
    await inf.start();
    await server.waitForWatches(1);
    server.failNext("GET", (r) => r.verb === "watch", 410);
    server.dropWatches();
    await until(() => server.requests.filter((r) => r.verb === "list").length === 2, "relist after 410");
    await server.waitForWatches(1);
    expect(rec.errors).toEqual([]);

    server.failNext("GET", (r) => r.verb === "list", 500);
    server.failNext("GET", (r) => r.verb === "watch", 410);
    server.dropWatches();
    await until(() => rec.errors.length === 1, "error after failed relist");
    expect(rec.errors[0]).toMatchObject({ code: 500 });
    expect(server.activeWatches()).toBe(0);
    await inf.start();
    await server.waitForWatches(1);
    expect(rec.events.map((e) => e.split(" ").slice(0, 2).join(" "))).toEqual(["add a"]);
  });

  it("a connection reset surfaces as an informer error; start() recovers without duplicates", async () => {
    server.store.create("pods", pod("a", "node-a"));
    const { inf, rec } = nodeInformer("node-a");
    await inf.start();
    await server.waitForWatches(1);

    server.dropWatches({ mode: "reset" });
    server.store.create("pods", pod("b", "node-a"));
    await until(() => rec.errors.length === 1, "error callback");
    // client-node 1.4.0 does not restart by itself after an error: the caller must.
    await new Promise((r) => setTimeout(r, 100));
    expect(server.activeWatches()).toBe(0);
    await inf.start();
    await until(() => rec.events.length === 2, "add b");
    expect(rec.events.map((e) => e.split(" ")[1])).toEqual(["a", "b"]);
    expect(inf.list().map((p) => p.metadata?.name).sort()).toEqual(["a", "b"]);
  });
});
