import { beforeEach, describe, expect, it } from "vitest";
import { CniEventHandler } from "../../src/agent/cni-handler.js";
import { PodLifecycle } from "../../src/agent/enroll/lifecycle.js";
import type { PodView } from "../../src/agent/enroll/model.js";
import type { EnrollmentSource } from "../../src/agent/enroll/source.js";
import type { CmdAddEvent } from "../../src/cni-contract/index.js";
import { FakeHost, FakeOpener, FakeRedirector, FakeZds, StepLog, fakePod, recordingAnnotator } from "../fixtures/agent-fakes.js";

class StaticSource implements EnrollmentSource {
  constructor(
    readonly kind: "kubernetes" | "inventory",
    private readonly list: PodView[],
    private readonly ns: Record<string, Record<string, string>>,
  ) {}
  async start(): Promise<void> {}
  pods(): PodView[] {
    return this.list;
  }
  namespaceLabels(n: string): Record<string, string> | undefined {
    return this.ns[n];
  }
  async lookup(namespace: string, name: string): Promise<PodView | undefined> {
    return this.list.find((p) => p.name === name && (namespace === "" || p.namespace === namespace));
  }
  async setRedirection(): Promise<void> {}
  notReadyReason(): undefined {
    return undefined;
  }
  async stop(): Promise<void> {}
}

function add(name: string, namespace: string, netns = "/run/netns/a"): CmdAddEvent {
  return { netns, podName: name, podNamespace: namespace, ips: [{ interface: 0, address: "10.0.0.5", prefixLength: 24, gateway: "10.0.0.1" }] };
}

describe("CNI event handler (the agent's answer to the plugin)", () => {
  let log: StepLog;
  let zds: FakeZds;
  let lifecycle: PodLifecycle;
  let opener: FakeOpener;
  let results: string[];

  function handler(kind: "kubernetes" | "inventory"): CniEventHandler {
    const source = new StaticSource(
      kind,
      [
        fakePod("u1", { name: "web", namespace: "mesh" }),
        fakePod("u2", { name: "db", namespace: "plain" }),
        fakePod("u3", { name: "side", namespace: "mesh", annotations: { "sidecar.istio.io/status": "{}" } }),
      ],
      { mesh: { "istio.io/dataplane-mode": "ambient" }, plain: {} },
    );
    return new CniEventHandler({
      source,
      lifecycle,
      decide: { excludeNamespaces: ["kube-system"], agentNamespace: "istio-system" },
      notReadyReason: () => undefined,
      onResult: (t, c) => results.push(`${t} ${c}`),
    });
  }

  beforeEach(() => {
    log = new StepLog();
    zds = new FakeZds(log);
    opener = new FakeOpener();
    opener.ids.set("/run/netns/a", "A");
    results = [];
    lifecycle = new PodLifecycle({ zds, redirector: new FakeRedirector(log), host: new FakeHost(log), opener, annotate: recordingAnnotator(log), addrsIn: async () => [] });
  });

  it("an ambient pod's ADD answers only once it is fully enrolled, with the event's netns and IPs", async () => {
    expect(await handler("kubernetes").onAdd(add("web", "mesh"))).toEqual({ outcome: "enrolled" });
    expect(log.steps).toEqual(["rules-apply", "zds-add u1", "ipset-add 10.0.0.5", "annotate enabled"]);
    expect(lifecycle.get("u1")).toMatchObject({ origin: "/run/netns/a", state: "enabled", ips: ["10.0.0.5"] });
    expect(results).toEqual(["add 200"]);
  });

  it("non-ambient pods pass through untouched", async () => {
    const h = handler("kubernetes");
    expect(await h.onAdd(add("db", "plain"))).toMatchObject({ outcome: "not-enrolled" });
    expect(await h.onAdd(add("side", "mesh"))).toEqual({ outcome: "not-enrolled", reason: "pod has a sidecar" });
    expect(log.steps).toEqual([]);
    expect(opener.opened).toHaveLength(0);
  });

  it("fails closed when ztunnel does not take the pod, and forgets the sandbox", async () => {
    zds.down = true;
    const d = await handler("kubernetes").onAdd(add("web", "mesh"));
    expect(d.outcome).toBe("refused");
    expect(d.outcome === "refused" && d.reason).toMatch(/mesh\/web could not be added.*no ztunnel connection/);
    expect(lifecycle.get("u1")).toBeUndefined();
    expect(lifecycle.list()).toEqual([]);
    expect(opener.openCount()).toBe(0);
    expect(results).toEqual(["add 500"]);
    zds.down = false;
    expect(await handler("kubernetes").onAdd(add("web", "mesh"))).toEqual({ outcome: "enrolled" });
  });

  it("an unknown pod: refused in Kubernetes mode (cannot judge it), passed through on a cluster-free node", async () => {
    expect((await handler("kubernetes").onAdd(add("ghost", "mesh"))).outcome).toBe("refused");
    expect(await handler("inventory").onAdd(add("ghost", ""))).toMatchObject({ outcome: "not-enrolled", reason: expect.stringMatching(/not in this node's inventory/) });
  });

  it("podman passes only the pod name: a cluster-free node matches it by name", async () => {
    expect(await handler("inventory").onAdd(add("web", ""))).toEqual({ outcome: "enrolled" });
  });

  it("DEL releases the pod on a cluster-free node, and is left to the informer in Kubernetes", async () => {
    await handler("kubernetes").onAdd(add("web", "mesh"));
    await handler("kubernetes").onDel({ containerId: "c1", netns: "/run/netns/a", podName: "web", podNamespace: "mesh" });
    expect(lifecycle.get("u1")).toBeDefined();
    await handler("inventory").onDel({ containerId: "c1", netns: "/run/netns/a", podName: "web", podNamespace: "" });
    expect(lifecycle.get("u1")).toBeUndefined();
    expect(log.steps.slice(-2)).toEqual(["ipset-del 10.0.0.5", "zds-del u1"]);
    expect(results.filter((r) => r.startsWith("del"))).toEqual(["del 200", "del 200"]);
  });

  // Issue 16 defect 2: the sandbox (container id + netns) is the pod's identity, not its name.
  it("a stale DEL for another container of the same pod is a no-op; the enrolled sandbox's own DEL releases it", async () => {
    const h = handler("inventory");
    expect(await h.onAdd({ ...add("web", ""), containerId: "c-new" })).toEqual({ outcome: "enrolled" });
    log.clear();
    await h.onDel({ containerId: "c-old", netns: "/run/netns/old", podName: "web", podNamespace: "" });
    await h.onDel({ containerId: "c-old", netns: "", podName: "web", podNamespace: "" });
    expect(lifecycle.get("u1")).toMatchObject({ state: "enabled", containerId: "c-new", origin: "/run/netns/a" });
    expect(zds.added.has("u1")).toBe(true);
    expect(log.steps).toEqual([]);
    await h.onDel({ containerId: "c-new", netns: "/run/netns/a", podName: "web", podNamespace: "" });
    expect(lifecycle.get("u1")).toBeUndefined();
    expect(log.steps).toEqual(["ipset-del 10.0.0.5", "zds-del u1"]);
  });

  it("a failed ADD (CNI_NETNS that does not exist) for a running enrolled pod rolls back nothing of that pod", async () => {
    const h = handler("inventory");
    expect(await h.onAdd({ ...add("web", ""), containerId: "c1" })).toEqual({ outcome: "enrolled" });
    log.clear();
    const d = await h.onAdd({ ...add("web", "", "/run/netns/does-not-exist"), containerId: "c2" });
    expect(d.outcome).toBe("refused");
    expect(d.outcome === "refused" && d.reason).toMatch(/no netns at \/run\/netns\/does-not-exist/);
    expect(lifecycle.get("u1")).toMatchObject({ state: "enabled", containerId: "c1", origin: "/run/netns/a" });
    expect(zds.added.has("u1")).toBe(true);
    expect(log.steps).toEqual([]);
    expect(opener.openCount()).toBe(1);
  });

  it("a failed ADD of a new sandbox undoes only that sandbox", async () => {
    opener.ids.set("/run/netns/b", "B");
    const h = handler("inventory");
    zds.down = true;
    expect((await h.onAdd({ ...add("web", "", "/run/netns/b"), containerId: "c1" })).outcome).toBe("refused");
    expect(lifecycle.get("u1")).toBeUndefined();
    expect(opener.openCount()).toBe(0);
    expect(log.steps).toEqual(["rules-apply", "zds-add-fail u1", "ipset-del 10.0.0.5", "zds-del u1"]);
  });

  it("measures CNI ADD received → ztunnel ack once per enrolled pod, never for a refused one", async () => {
    const seen: number[] = [];
    const source = new StaticSource("inventory", [fakePod("u1", { name: "web", namespace: "mesh" })], { mesh: { "istio.io/dataplane-mode": "ambient" } });
    const h = new CniEventHandler({ source, lifecycle, decide: { excludeNamespaces: [], agentNamespace: "istio-system" }, notReadyReason: () => undefined, onPodReady: (s) => seen.push(s) });
    zds.down = true;
    expect((await h.onAdd(add("web", ""))).outcome).toBe("refused");
    expect(seen).toEqual([]);
    zds.down = false;
    expect(await h.onAdd(add("web", ""))).toEqual({ outcome: "enrolled" });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeGreaterThanOrEqual(0);
  });
});
