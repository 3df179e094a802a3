import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitUntil as until } from "../harness/wait.js";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ApiException,
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type V1Pod,
} from "@kubernetes/client-node";
import { FakeKubeServer, kubeConfigFor, rbacResource, rbacUsage, writeKubeconfig, type KubeObjectInput } from "../harness/fake-kube/index.js";

// The REST surface through @kubernetes/client-node 1.4.0's object-parameter API: the calls our
// agent and ztunnel make, and the error shapes they must handle.

const REDIRECTION = "ambient.istio.io/redirection";

function pod(name: string, ns: string, labels: Record<string, string> = {}, node = "node-a"): KubeObjectInput {
  return {
    metadata: { name, namespace: ns, labels },
    spec: { nodeName: node, containers: [{ name: "app", image: "busybox" }] },
    status: { phase: "Running", podIP: "10.244.0.5" },
  };
}

async function apiError(p: Promise<unknown>): Promise<{ code: number; status: Record<string, unknown> }> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ApiException);
    const e = err as ApiException<unknown>;
    const body = typeof e.body === "string" ? (JSON.parse(e.body) as Record<string, unknown>) : {};
    return { code: e.code, status: body };
  }
  throw new Error("expected the call to fail");
}

const merge = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

describe("fake kube API server REST surface via client-node", () => {
  let server: FakeKubeServer;
  let core: CoreV1Api;
  let dir: string | undefined;

  beforeEach(async () => {
    server = await FakeKubeServer.start({ bookmarkIntervalMs: 50 });
    core = kubeConfigFor(server).makeApiClient(CoreV1Api);
    server.store.create("namespaces", { metadata: { name: "default" } });
    server.store.create("namespaces", { metadata: { name: "mesh", labels: { "istio.io/dataplane-mode": "ambient" } } });
  });

  afterEach(async () => {
    await server.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it("patchNamespacedPodStatus with a merge patch sets an annotation a later GET shows; null removes it", async () => {
    const before = server.store.create("pods", pod("web", "mesh"));
    const patched = await core.patchNamespacedPodStatus(
      { name: "web", namespace: "mesh", body: { metadata: { annotations: { [REDIRECTION]: "enabled" } } } },
      merge,
    );
    expect(patched.metadata?.annotations?.[REDIRECTION]).toBe("enabled");
    expect(Number(patched.metadata?.resourceVersion)).toBeGreaterThan(Number(before.metadata.resourceVersion));

    const got = await core.readNamespacedPod({ name: "web", namespace: "mesh" });
    expect(got.metadata?.annotations).toEqual({ [REDIRECTION]: "enabled" });
    expect(got.status?.phase).toBe("Running");
    expect(got.spec?.nodeName).toBe("node-a");

    const rec = server.requests.find((r) => r.verb === "patch");
    expect(rec).toMatchObject({ resource: "pods", subresource: "status", namespace: "mesh", name: "web", contentType: PatchStrategy.MergePatch });
    expect(rbacResource(rec!)).toBe("pods/status");

    await core.patchNamespacedPodStatus({ name: "web", namespace: "mesh", body: { metadata: { annotations: { [REDIRECTION]: null } } } }, merge);
    expect(server.store.get("pods", "web", "mesh")?.metadata.annotations).toEqual({});
  });

  it("a status patch cannot change spec, a main-resource patch cannot change status", async () => {
    server.store.create("pods", pod("web", "mesh"));
    await core.patchNamespacedPodStatus({ name: "web", namespace: "mesh", body: { spec: { nodeName: "node-z" }, status: { phase: "Failed" } } }, merge);
    let stored = server.store.get("pods", "web", "mesh")!;
    expect(stored["spec"]).toMatchObject({ nodeName: "node-a" });
    expect(stored["status"]).toMatchObject({ phase: "Failed" });

    await core.patchNamespacedPod({ name: "web", namespace: "mesh", body: { metadata: { labels: { a: "b" } }, status: { phase: "Running" } } }, merge);
    stored = server.store.get("pods", "web", "mesh")!;
    expect(stored.metadata.labels).toEqual({ a: "b" });
    expect(stored["status"]).toMatchObject({ phase: "Failed" });
  });

  it("strategic merge and JSON patches; the client's default patch type needs a JSON patch array", async () => {
    server.store.create("pods", pod("web", "mesh", { app: "web" }));
    await core.patchNamespacedPod(
      { name: "web", namespace: "mesh", body: { metadata: { labels: { tier: "front" } } } },
      setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
    );
    expect(server.store.get("pods", "web", "mesh")?.metadata.labels).toEqual({ app: "web", tier: "front" });

    // Without a Content-Type override client-node sends application/json-patch+json.
    await core.patchNamespacedPod({
      name: "web",
      namespace: "mesh",
      body: [
        { op: "test", path: "/metadata/labels/app", value: "web" },
        { op: "remove", path: "/metadata/labels/tier" },
        { op: "add", path: "/metadata/annotations", value: { "a~b/c": "1" } },
      ],
    });
    const p = server.store.get("pods", "web", "mesh")!;
    expect(p.metadata.labels).toEqual({ app: "web" });
    expect(p.metadata.annotations).toEqual({ "a~b/c": "1" });

    const notArray = await apiError(core.patchNamespacedPod({ name: "web", namespace: "mesh", body: { metadata: { labels: { x: "y" } } } }));
    expect(notArray.code).toBe(400);
    const failedTest = await apiError(
      core.patchNamespacedPod({ name: "web", namespace: "mesh", body: [{ op: "test", path: "/metadata/labels/app", value: "db" }] }),
    );
    expect(failedTest.code).toBe(422);
    expect(failedTest.status).toMatchObject({ kind: "Status", reason: "Invalid", code: 422 });
    const apply = await apiError(
      core.patchNamespacedPod({ name: "web", namespace: "mesh", body: {} }, setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply)),
    );
    expect(apply.code).toBe(415);
  });

  it("404 is a NotFound Status; create conflicts are AlreadyExists; stale updates are Conflict", async () => {
    const missing = await apiError(core.readNamespacedPod({ name: "nope", namespace: "mesh" }));
    expect(missing).toEqual({
      code: 404,
      status: {
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Failure",
        message: 'pods "nope" not found',
        reason: "NotFound",
        details: { name: "nope", kind: "pods" },
        code: 404,
      },
    });
    const missingPatch = await apiError(core.patchNamespacedPodStatus({ name: "nope", namespace: "mesh", body: {} }, merge));
    expect(missingPatch.status).toMatchObject({ reason: "NotFound", code: 404 });

    const created = await core.createNamespacedPod({ namespace: "mesh", body: pod("web", "mesh") as V1Pod });
    expect(created.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata?.creationTimestamp).toBeInstanceOf(Date);
    expect(created.metadata?.resourceVersion).toBe(server.store.resourceVersion);
    // As on a real server, status is not the creator's to set; the service account is defaulted.
    expect(created.status?.phase).toBe("Pending");
    expect(created.spec?.serviceAccountName).toBe("default");

    const dup = await apiError(core.createNamespacedPod({ namespace: "mesh", body: pod("web", "mesh") as V1Pod }));
    expect(dup.code).toBe(409);
    expect(dup.status).toMatchObject({ kind: "Status", reason: "AlreadyExists", message: 'pods "web" already exists', details: { name: "web", kind: "pods" } });

    const fresh = await core.readNamespacedPod({ name: "web", namespace: "mesh" });
    fresh.metadata!.labels = { v: "1" };
    const updated = await core.replaceNamespacedPod({ name: "web", namespace: "mesh", body: fresh });
    expect(updated.metadata?.labels).toEqual({ v: "1" });
    fresh.metadata!.labels = { v: "2" }; // still carries the old resourceVersion
    const stale = await apiError(core.replaceNamespacedPod({ name: "web", namespace: "mesh", body: fresh }));
    expect(stale.code).toBe(409);
    expect(stale.status).toMatchObject({ reason: "Conflict", details: { name: "web", kind: "pods" } });
    expect(String(stale.status["message"])).toContain("the object has been modified");

    const noNs = await apiError(core.createNamespacedPod({ namespace: "ghost", body: pod("x", "ghost") as V1Pod }));
    expect(noNs.status).toMatchObject({ reason: "NotFound", message: 'namespaces "ghost" not found' });
  });

  it("a merge patch carrying a stale resourceVersion is a Conflict", async () => {
    const p = server.store.create("pods", pod("web", "mesh"));
    server.store.mutate("pods", "web", "mesh", (o) => {
      o.metadata.labels = { moved: "on" };
    });
    const r = await apiError(
      core.patchNamespacedPodStatus({ name: "web", namespace: "mesh", body: { metadata: { resourceVersion: p.metadata.resourceVersion, annotations: { a: "b" } } } }, merge),
    );
    expect(r.status).toMatchObject({ reason: "Conflict", code: 409 });
  });

  it("list filters by label selector (=, !=, in, notin, exists, !exists) and field selector", async () => {
    server.store.create("pods", pod("a", "default", { app: "web", tier: "front" }));
    server.store.create("pods", pod("b", "default", { app: "db" }, "node-b"));
    server.store.create("pods", pod("c", "mesh", { app: "web", "istio.io/dataplane-mode": "none" }));
    server.store.create("pods", pod("d", "mesh", {}));
    const names = async (labelSelector?: string, fieldSelector?: string, namespace?: string): Promise<string[]> => {
      const list =
        namespace === undefined
          ? await core.listPodForAllNamespaces({ ...(labelSelector ? { labelSelector } : {}), ...(fieldSelector ? { fieldSelector } : {}) })
          : await core.listNamespacedPod({ namespace, ...(labelSelector ? { labelSelector } : {}), ...(fieldSelector ? { fieldSelector } : {}) });
      expect(list.metadata?.resourceVersion).toBe(server.store.resourceVersion);
      return list.items.map((p) => p.metadata?.name ?? "");
    };
    expect(await names()).toEqual(["a", "b", "c", "d"]);
    expect(await names("app=web")).toEqual(["a", "c"]);
    expect(await names("app==web")).toEqual(["a", "c"]);
    expect(await names("app!=web")).toEqual(["b", "d"]);
    expect(await names("app in (db, web),tier")).toEqual(["a"]);
    expect(await names("app notin (web)")).toEqual(["b", "d"]);
    expect(await names("!app")).toEqual(["d"]);
    expect(await names("istio.io/dataplane-mode!=none")).toEqual(["a", "b", "d"]);
    expect(await names(undefined, "spec.nodeName=node-b")).toEqual(["b"]);
    expect(await names(undefined, "spec.nodeName!=node-b,metadata.namespace=mesh")).toEqual(["c", "d"]);
    expect(await names(undefined, "metadata.name=a")).toEqual(["a"]);
    expect(await names(undefined, "status.phase=Running")).toEqual(["a", "b", "c", "d"]);
    expect(await names("app=web", undefined, "mesh")).toEqual(["c"]);
    expect(await names(undefined, undefined, "nowhere")).toEqual([]);

    const nsList = await core.listNamespace({ labelSelector: "istio.io/dataplane-mode=ambient" });
    expect(nsList.items.map((n) => n.metadata?.name)).toEqual(["mesh"]);
    // Every namespace carries its own name as a label, as on a real cluster.
    expect(nsList.items[0]?.metadata?.labels?.["kubernetes.io/metadata.name"]).toBe("mesh");

    expect((await apiError(core.listPodForAllNamespaces({ labelSelector: "app in web" }))).code).toBe(400);
    const badField = await apiError(core.listPodForAllNamespaces({ fieldSelector: "spec.bogus=1" }));
    expect(badField.status).toMatchObject({ reason: "BadRequest", message: "field label not supported: spec.bogus" });
  });

  it("limit/continue pages through a list", async () => {
    for (const n of ["p1", "p2", "p3", "p4", "p5"]) server.store.create("pods", pod(n, "default"));
    const seen: string[] = [];
    let cont: string | undefined;
    let pages = 0;
    do {
      const page = await core.listNamespacedPod({ namespace: "default", limit: 2, ...(cont ? { _continue: cont } : {}) });
      seen.push(...page.items.map((p) => p.metadata?.name ?? ""));
      cont = page.metadata?._continue;
      pages++;
    } while (cont);
    expect(seen).toEqual(["p1", "p2", "p3", "p4", "p5"]);
    expect(pages).toBe(3);
  });

  it("services get a ClusterIP; EndpointSlices are served under discovery.k8s.io/v1", async () => {
    const svc = await core.createNamespacedService({
      namespace: "mesh",
      body: { metadata: { name: "web" }, spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: 8080 }] } },
    });
    expect(svc.spec?.clusterIP).toMatch(/^10\.96\.\d+\.\d+$/);
    expect(svc.spec?.ports?.[0]).toMatchObject({ port: 80, protocol: "TCP" });

    const disco = kubeConfigFor(server).makeApiClient(DiscoveryV1Api);
    await disco.createNamespacedEndpointSlice({
      namespace: "mesh",
      body: {
        metadata: { name: "web-abc", labels: { "kubernetes.io/service-name": "web" } },
        addressType: "IPv4",
        endpoints: [{ addresses: ["10.244.0.5"], conditions: { ready: true } }],
        ports: [{ port: 8080, protocol: "TCP" }],
      },
    });
    const slices = await disco.listEndpointSliceForAllNamespaces({ labelSelector: "kubernetes.io/service-name=web" });
    expect(slices.items.map((s) => s.endpoints[0]?.addresses)).toEqual([["10.244.0.5"]]);
    const missing = await apiError(disco.readNamespacedEndpointSlice({ name: "x", namespace: "mesh" }));
    expect(missing.status).toMatchObject({ message: 'endpointslices.discovery.k8s.io "x" not found', details: { group: "discovery.k8s.io" } });
    expect(server.requests.filter((r) => r.apiGroup === "discovery.k8s.io").map((r) => r.verb)).toEqual(["create", "list", "get"]);
  });

  it("delete emits DELETED; finalizers hold an object until removed", async () => {
    server.store.create("pods", { ...pod("held", "mesh"), metadata: { name: "held", namespace: "mesh", finalizers: ["x/y"] } });
    server.store.create("pods", pod("plain", "mesh"));
    const events: string[] = [];
    const w = new Watch(kubeConfigFor(server));
    const ctl = await w.watch(
      "/api/v1/namespaces/mesh/pods",
      { resourceVersion: server.store.resourceVersion },
      (type, obj: V1Pod) => events.push(`${type} ${obj.metadata?.name} ${obj.metadata?.deletionTimestamp ? "terminating" : ""}`.trim()),
      () => undefined,
    );
    await server.waitForWatches(1);
    await core.deleteNamespacedPod({ name: "plain", namespace: "mesh" });
    const marked = await core.deleteNamespacedPod({ name: "held", namespace: "mesh" });
    expect(marked.metadata?.deletionTimestamp).toBeInstanceOf(Date);
    expect(server.store.get("pods", "held", "mesh")).toBeDefined();
    await core.patchNamespacedPod({ name: "held", namespace: "mesh", body: { metadata: { finalizers: null } } }, merge);
    expect(server.store.get("pods", "held", "mesh")).toBeUndefined();
    await until(() => events.length >= 3, "three events");
    ctl.abort();
    expect(events).toEqual(["DELETED plain", "MODIFIED held terminating", "DELETED held terminating"]);
    expect(server.requests.filter((r) => r.resource === "pods").map((r) => r.verb)).toEqual(["watch", "delete", "delete", "patch"]);
  });

  it("gracefulPodDeletion: a client DELETE marks a running pod; the kubelet (store.delete) finishes it", async () => {
    await server.stop();
    server = await FakeKubeServer.start({ gracefulPodDeletion: true });
    core = kubeConfigFor(server).makeApiClient(CoreV1Api);
    server.store.create("namespaces", { metadata: { name: "mesh" } });
    server.store.create("pods", pod("running", "mesh"));
    server.store.create("pods", { ...pod("done", "mesh"), status: { phase: "Succeeded" } });
    const events: string[] = [];
    const ctl = await new Watch(kubeConfigFor(server)).watch(
      "/api/v1/namespaces/mesh/pods",
      { resourceVersion: server.store.resourceVersion },
      (type, obj: { metadata: { name: string; deletionGracePeriodSeconds?: number } }) =>
        events.push(`${type} ${obj.metadata.name} ${obj.metadata.deletionGracePeriodSeconds ?? "-"}`),
      () => undefined,
    );
    await server.waitForWatches(1);
    const marked = await core.deleteNamespacedPod({ name: "running", namespace: "mesh", gracePeriodSeconds: 5 });
    expect(marked.metadata?.deletionGracePeriodSeconds).toBe(5);
    expect(marked.metadata!.deletionTimestamp!.getTime()).toBeGreaterThan(Date.now());
    await core.deleteNamespacedPod({ name: "done", namespace: "mesh" });
    expect(server.store.get("pods", "running", "mesh")).toBeDefined();
    server.store.delete("pods", "running", "mesh");
    await until(() => events.length >= 3, "three events");
    ctl.abort();
    expect(events).toEqual(["MODIFIED running 5", "DELETED done -", "DELETED running 5"]);
  });

  it("raw watch: replay from a resourceVersion, bookmarks when allowed, 410 ERROR event when too old, timeoutSeconds", async () => {
    const kc = kubeConfigFor(server);
    const p1 = server.store.create("pods", pod("one", "default"));
    server.store.create("pods", pod("two", "default"));
    const events: { type: string; rv: string | undefined; name: string | undefined; code?: number }[] = [];
    let done: ((err: unknown) => void) | undefined;
    const ended = new Promise<unknown>((resolve) => (done = resolve));
    await new Watch(kc).watch(
      "/api/v1/namespaces/default/pods",
      { resourceVersion: p1.metadata.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 1 },
      (type, obj: { metadata?: { resourceVersion?: string; name?: string }; code?: number }) =>
        events.push({ type, rv: obj.metadata?.resourceVersion, name: obj.metadata?.name, ...(obj.code ? { code: obj.code } : {}) }),
      (err) => done?.(err),
    );
    await server.waitForWatches(1);
    server.sendBookmarks();
    expect(await ended).toBeNull(); // closed by the server after timeoutSeconds, cleanly
    expect(events[0]).toMatchObject({ type: "ADDED", name: "two" });
    const bookmarks = events.filter((e) => e.type === "BOOKMARK");
    expect(bookmarks.length).toBeGreaterThanOrEqual(2); // on demand + periodic (50 ms)
    expect(bookmarks[0]!.rv).toBe(server.store.resourceVersion);
    expect(events.some((e) => e.name === "one")).toBe(false);

    server.compactHistory();
    const errs: unknown[] = [];
    let done2: (() => void) | undefined;
    const ended2 = new Promise<void>((resolve) => (done2 = resolve));
    await new Watch(kc).watch(
      "/api/v1/pods",
      { resourceVersion: p1.metadata.resourceVersion },
      (type, obj) => errs.push({ type, obj }),
      () => done2?.(),
    );
    await ended2;
    expect(errs).toEqual([
      {
        type: "ERROR",
        obj: expect.objectContaining({ kind: "Status", code: 410, reason: "Expired", message: expect.stringMatching(/^too old resource version: /) }),
      },
    ]);
  });

  it("a watch without resourceVersion starts with synthetic ADDED events; selectors turn changes into ADDED/DELETED", async () => {
    server.store.create("namespaces", { metadata: { name: "plain" } });
    const kc = kubeConfigFor(server);
    const events: string[] = [];
    const ctl = await new Watch(kc).watch(
      "/api/v1/namespaces",
      { labelSelector: "istio.io/dataplane-mode=ambient" },
      (type, obj: { metadata: { name: string } }) => events.push(`${type} ${obj.metadata.name}`),
      () => undefined,
    );
    await server.waitForWatches(1);
    server.store.mutate("namespaces", "plain", undefined, (n) => {
      n.metadata.labels = { ...n.metadata.labels, "istio.io/dataplane-mode": "ambient" };
    });
    server.store.mutate("namespaces", "mesh", undefined, (n) => {
      delete n.metadata.labels?.["istio.io/dataplane-mode"];
    });
    await until(() => events.length >= 3, "three events");
    ctl.abort();
    expect(events).toEqual(["ADDED mesh", "ADDED plain", "DELETED mesh"]);
  });

  it("sendInitialEvents streams the current state, then a bookmark marking its end", async () => {
    const events: string[] = [];
    const ctl = await new Watch(kubeConfigFor(server)).watch(
      "/api/v1/namespaces",
      { sendInitialEvents: true, allowWatchBookmarks: true, resourceVersionMatch: "NotOlderThan", resourceVersion: "" },
      (type, obj: { metadata: { name?: string; annotations?: Record<string, string> } }) =>
        events.push(type === "BOOKMARK" ? `BOOKMARK ${JSON.stringify(obj.metadata.annotations)}` : `${type} ${obj.metadata.name}`),
      () => undefined,
    );
    await until(() => events.length >= 3, "initial events and bookmark");
    ctl.abort();
    expect(events.slice(0, 3)).toEqual(["ADDED default", "ADDED mesh", 'BOOKMARK {"k8s.io/initial-events-end":"true"}']);
  });

  it("requires the bearer token; writes a kubeconfig client-node loads", async () => {
    const anon = new KubeConfig();
    anon.loadFromOptions({
      clusters: [{ name: "c", server: server.url, skipTLSVerify: true }],
      users: [{ name: "u" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    const denied = await apiError(anon.makeApiClient(CoreV1Api).listNamespace());
    expect(denied.code).toBe(401);
    expect(server.requests.at(-1)).toMatchObject({ verb: "list", resource: "namespaces", status: 401 });

    dir = await mkdtemp(join(tmpdir(), "fake-kube-"));
    const path = await writeKubeconfig(server, join(dir, "kubeconfig"));
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readFile(path, "utf8")).toContain("insecure-skip-tls-verify: true");
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    const list = await kc.makeApiClient(CoreV1Api).listNamespace();
    expect(list.items.map((n) => n.metadata?.name)).toEqual(["default", "mesh"]);
  });

  it("serves the same cluster on an extra listener, until stopped", async () => {
    const second = await server.addListener({ host: "127.0.0.2" });
    expect(second).toMatch(/^http:\/\/127\.0\.0\.2:\d+$/);
    const via = (url: string): CoreV1Api => kubeConfigFor({ url, token: server.token }).makeApiClient(CoreV1Api);
    await via(second).createNamespace({ body: { metadata: { name: "via-second" } } });
    expect((await via(server.url).listNamespace()).items.map((n) => n.metadata?.name)).toContain("via-second");
    await server.stop();
    await expect(via(second).listNamespace()).rejects.toThrow(/ECONNREFUSED/);
    server = await FakeKubeServer.start(); // for afterEach
  });

  it("failNext injects one failure; waitForRequest and the record describe calls as RBAC sees them", async () => {
    server.store.create("pods", pod("web", "mesh"));
    server.failNext("PATCH", /\/pods\/web\/status$/, 503);
    const failed = await apiError(core.patchNamespacedPodStatus({ name: "web", namespace: "mesh", body: { metadata: { annotations: { a: "b" } } } }, merge));
    expect(failed.status).toMatchObject({ kind: "Status", code: 503, reason: "ServiceUnavailable" });
    expect(server.store.get("pods", "web", "mesh")?.metadata.annotations).toBeUndefined();
    await core.patchNamespacedPodStatus({ name: "web", namespace: "mesh", body: { metadata: { annotations: { a: "b" } } } }, merge);
    expect(server.store.get("pods", "web", "mesh")?.metadata.annotations).toEqual({ a: "b" });

    server.failNext("*", (r) => r.verb === "list" && r.resource === "namespaces", 403, { times: 2 });
    expect((await apiError(core.listNamespace())).code).toBe(403);
    expect((await apiError(core.listNamespace())).code).toBe(403);
    await core.listNamespace();

    const waiting = server.waitForRequest((r) => r.verb === "get" && r.resource === "namespaces" && r.name === "mesh", { since: server.nextSeq });
    await core.readNamespace({ name: "mesh" });
    expect(await waiting).toMatchObject({ namespace: "mesh", status: 200, path: "/api/v1/namespaces/mesh" });

    const summary = server.requests.filter((r) => r.status === 200).map((r) => `${r.verb} ${rbacResource(r)} ${r.namespace ?? "-"}`);
    expect(summary).toEqual(["patch pods/status mesh", "list namespaces -", "get namespaces mesh"]);
    expect(rbacUsage(server.requests)).toEqual([
      { apiGroup: "", resource: "namespaces", verbs: ["get", "list"] },
      { apiGroup: "", resource: "pods/status", verbs: ["patch"] },
    ]);
    await expect(server.waitForRequest((r) => r.verb === "delete", { timeoutMs: 50 })).rejects.toThrow(/no matching request/);
  });
});
