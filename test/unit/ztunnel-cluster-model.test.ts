import type { V1EndpointSlice, V1Pod, V1Service } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { buildState } from "../../src/ztunnel/cluster/model.js";

// Kubernetes objects → workloads/services: the corner cases the fake-cluster test does not reach.

const OPTS = { trustDomain: "td.example", clusterDomain: "cluster.local", network: "" };

function pod(name: string, uid: string, ip: string | string[], extra: { phase?: string; created?: string } = {}): V1Pod {
  const ips = Array.isArray(ip) ? ip : [ip];
  return {
    metadata: { name, namespace: "ns", uid, creationTimestamp: new Date(extra.created ?? "2026-01-01T00:00:00Z") },
    spec: { nodeName: "n1", containers: [{ name: "c", ports: [{ name: "web", containerPort: 8080 }, { name: "dns", containerPort: 53, protocol: "UDP" }] }] },
    status: { phase: extra.phase ?? "Running", podIPs: ips.map((i) => ({ ip: i })) },
  };
}

const svc: V1Service = {
  metadata: { name: "s", namespace: "ns" },
  spec: {
    clusterIPs: ["10.96.0.5", "fd00:10:96::5"],
    ports: [
      { name: "http", port: 80, targetPort: "web" },
      { name: "dns", port: 53, protocol: "UDP", targetPort: 53 },
    ],
  },
};

function slice(name: string, addressType: string, ref: { name: string; uid?: string }, port?: number): V1EndpointSlice {
  return {
    metadata: { name, namespace: "ns", labels: { "kubernetes.io/service-name": "s" } },
    addressType,
    ports: port === undefined ? [] : [{ name: "http", port, protocol: "TCP" }],
    endpoints: [{ addresses: ["x"], targetRef: { kind: "Pod", namespace: "ns", ...ref } }],
  };
}

describe("cluster model", () => {
  it("dual-stack: both VIPs, both slices merge into one membership; UDP ports are not modelled", () => {
    const { data } = buildState(
      { pods: [pod("a", "u1", ["10.0.0.1", "fd00::0001"])], services: [svc], endpointSlices: [slice("v4", "IPv4", { name: "a" }), slice("v6", "IPv6", { name: "a" }, 8080)], namespaces: [] },
      OPTS,
    );
    expect(data.services[0]).toMatchObject({ vips: [{ network: "", address: "10.96.0.5" }, { network: "", address: "fd00:10:96::5" }], ports: { "80": 0 } });
    expect(data.workloads[0]).toMatchObject({ workloadIps: ["10.0.0.1", "fd00::1"], trustDomain: "td.example", services: { "ns/s.ns.svc.cluster.local": { "80": 8080 } } });
  });

  it("what the DNS proxy needs: TCP port names (SRV), a single-stack family, and pod hostname with subdomain", () => {
    const headless: V1Service = {
      metadata: { name: "s", namespace: "ns" },
      spec: { clusterIP: "None", ipFamilies: ["IPv4"], ports: [{ name: "http", port: 80, targetPort: "web" }, { name: "dns", port: 53, protocol: "UDP" }] },
    };
    const named = pod("a", "u1", "10.0.0.1");
    named.spec = { ...named.spec!, hostname: "a-0", subdomain: "s" };
    const plain = pod("b", "u2", "10.0.0.2");
    plain.spec = { ...plain.spec!, hostname: "b-0" };
    const { data } = buildState({ pods: [named, plain], services: [headless], endpointSlices: [slice("v4", "IPv4", { name: "a" }, 8080)], namespaces: [] }, OPTS);
    expect(data.services[0]).toMatchObject({ vips: [], portNames: { "80": "http" }, ipFamilies: "IPv4" });
    expect(data.workloads.find((w) => w.name === "a")?.hostname).toBe("a-0");
    // No subdomain: Kubernetes gives the pod no DNS name of its own.
    expect(data.workloads.find((w) => w.name === "b")?.hostname).toBeUndefined();
    expect(buildState({ pods: [], services: [svc], endpointSlices: [], namespaces: [] }, OPTS).data.services[0]?.ipFamilies).toBeUndefined();
  });

  it("an endpoint whose targetRef uid is another incarnation, an FQDN slice or an unknown pod adds no membership", () => {
    const { data } = buildState(
      {
        pods: [pod("a", "u1", "10.0.0.1")],
        services: [svc],
        endpointSlices: [slice("old", "IPv4", { name: "a", uid: "u0" }, 8080), slice("f", "FQDN", { name: "a" }, 8080), slice("x", "IPv4", { name: "nobody" }, 8080)],
        namespaces: [],
      },
      OPTS,
    );
    expect(data.workloads[0]?.services).toEqual({});
  });

  it("two pods with one IP: the running, newest one wins and the other is reported", () => {
    const { data, conflicts } = buildState(
      {
        pods: [
          pod("old", "u1", "10.0.0.1", { created: "2026-01-01T00:00:00Z" }),
          pod("new", "u2", "10.0.0.1", { created: "2026-01-02T00:00:00Z" }),
          pod("pending", "u3", "10.0.0.1", { phase: "Pending", created: "2026-01-03T00:00:00Z" }),
        ],
        services: [],
        endpointSlices: [],
        namespaces: [],
      },
      OPTS,
    );
    expect(data.workloads.map((w) => w.name)).toEqual(["new"]);
    expect(conflicts).toEqual(["ns/old", "ns/pending"]);
  });

  it("a named targetPort with neither a slice port nor a matching container port leaves the pod out of that port", () => {
    const named: V1Service = { metadata: { name: "s", namespace: "ns" }, spec: { clusterIP: "10.96.0.6", ports: [{ name: "http", port: 80, targetPort: "grpc" }, { name: "m", port: 9090 }] } };
    const { data } = buildState({ pods: [pod("a", "u1", "10.0.0.1")], services: [named], endpointSlices: [slice("s1", "IPv4", { name: "a" })], namespaces: [] }, OPTS);
    expect(data.workloads[0]?.services).toEqual({ "ns/s.ns.svc.cluster.local": { "9090": 9090 } });
    expect(data.services[0]?.ports).toEqual({ "80": 0, "9090": 9090 });
  });
});
