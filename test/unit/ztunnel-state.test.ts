import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FileStateSource } from "../../src/ztunnel/state/file-source.js";
import { canonicalIp, formatHostPort, parseHostPort } from "../../src/ztunnel/state/ip.js";
import { LocalConfigError, parseLocalConfig } from "../../src/ztunnel/state/local-config.js";
import { WorkloadStore } from "../../src/ztunnel/state/store.js";
import { tempDir } from "../fixtures/ztunnel-pki.js";

const fixture = new URL("../fixtures/ztunnel-local-config.yaml", import.meta.url);
const text = () => readFile(fixture, "utf8");

describe("local config validation", () => {
  it("parses the fixture with defaults applied", async () => {
    const data = parseLocalConfig(await text());
    expect(data.workloads).toHaveLength(3);
    const legacy = data.workloads[2];
    expect(legacy).toMatchObject({ serviceAccount: "default", trustDomain: "cluster.local", protocol: "TCP", status: "Healthy" });
    expect(data.workloads[1]?.workloadIps).toEqual(["10.0.0.2", "fd00::2"]);
    expect(data.services[0]?.vips).toEqual([
      { network: "", address: "10.96.0.10" },
      { network: "net1", address: "10.96.0.11" },
    ]);
    expect(data.services[0]?.ports).toEqual({ "80": 9090 });
    expect(data.policies[0]).toMatchObject({ action: "Deny", scope: "Namespace", rules: [[[{ notPrincipals: [{ kind: "presence", value: "" }] }]]] });
    expect(data.policies[1]?.rules[0]?.[0]?.[0]?.destinationPorts).toEqual([8080, 9090]);
  });

  it("accepts (and ignores) ztunnel LocalConfig fields this data plane does not use", () => {
    const data = parseLocalConfig(`
workloads:
  - {name: a, namespace: n, workloadIps: [10.0.0.1], canonicalName: a, canonicalRevision: v1, workloadName: a, workloadType: deployment, clusterId: Kubernetes}
services:
  - {name: s, namespace: n, hostname: h, loadBalancer: null, ipFamilies: IPv4}
policies:
  - {name: p, namespace: n, dryRun: false}
`);
    expect(data.workloads[0]).not.toHaveProperty("canonicalName");
    expect(data.services[0]?.hostname).toBe("h");
  });

  it("an empty document is an empty state", () => {
    expect(parseLocalConfig("")).toEqual({ workloads: [], services: [], policies: [], notices: [] });
  });

  it.each([
    [`workloads: [{name: a, namespace: n, workloadIps: ["10.0.0.1"]}, {name: b, namespace: n}, {name: c, namespace: n, workloadIps: ["10.0.0.x"]}]`,
      'workloads[2].workloadIps[0]: "10.0.0.x" is not an IP address'],
    [`workloads: [{name: a, namespace: n, protocol: QUIC}]`, 'workloads[0].protocol: "QUIC" is not one of HBONE, TCP'],
    [`workloads: [{name: a, namespace: n, serviceAcount: x}]`, "workloads[0].serviceAcount: unknown field (did you mean serviceAccount?)"],
    [`workloads: [{namespace: n}]`, "workloads[0].name: is required"],
    [`workloads: [{name: a, namespace: n}, {name: a, namespace: n}]`, 'workloads[1].uid: duplicate uid "n/a"'],
    [`workloads: [{name: a, namespace: n, workloadIps: [10.0.0.1]}, {name: b, namespace: n, workloadIps: [10.0.0.1]}]`, 'workloads[1].workloadIps[0]: duplicate workload IP "10.0.0.1"'],
    [`workloads: [{name: a, namespace: n, services: {"nohostname": {}}}]`, 'workloads[0].services["nohostname"]: "nohostname" is not "namespace/hostname"'],
    [`workloads: [{name: a, namespace: n, services: {"n/h": {"80": 70000}}}]`, 'workloads[0].services["n/h"]["80"]: 70000 is not a port'],
    [`services: [{name: s, namespace: n, hostname: h, vips: [{address: nope}]}]`, 'services[0].vips[0].address: "nope" is not an IP address'],
    [`services: [{name: s, namespace: n, hostname: h, ports: {"http": 80}}]`, 'services[0].ports["http"]: "http" is not a port'],
    [`services: {name: s}`, "services: expected a list, got a mapping"],
    [`policies: [{name: p, namespace: n, action: Block}]`, 'policies[0].action: "Block" is not one of Allow, Deny'],
    [`policies: [{name: p, namespace: n, rules: [[[{sourceIps: ["10.0.0.0/33"]}]]]}]`, 'policies[0].rules[0][0][0].sourceIps[0]: prefix length "33" is not 0-32'],
    [`policies: [{name: p, namespace: n, rules: [[[{principal: ["x"]}]]]}]`, "policies[0].rules[0][0][0].principal: unknown field (did you mean principals?)"],
    [`workload: []`, "workload: unknown field (did you mean workloads?)"],
    [`workloads: [ {`, "(document): not valid YAML"],
  ])("%s → %s", (yaml, message) => {
    let err: unknown;
    try {
      parseLocalConfig(yaml, "local.yaml");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LocalConfigError);
    expect((err as Error).message).toContain(`local.yaml: ${message}`);
  });
});

describe("WorkloadStore", () => {
  async function loaded(random = () => 0): Promise<WorkloadStore> {
    const s = new WorkloadStore(random);
    s.replace(parseLocalConfig(await text()), "fixture");
    return s;
  }

  it("looks workloads up by IP (any spelling) and uid", async () => {
    const s = await loaded();
    expect(s.workloadByIp("10.0.0.1")?.name).toBe("echo-a");
    expect(s.workloadByIp("::ffff:10.0.0.1")?.name).toBe("echo-a");
    expect(s.workloadByIp("fd00:0:0::2")?.name).toBe("echo-b");
    expect(s.workloadByIp("10.9.9.9")).toBeUndefined();
    expect(s.workloadByUid("legacy")?.namespace).toBe("other");
  });

  it("resolves VIP:port to endpoints with per-workload target ports and picks a healthy one", async () => {
    const s = await loaded();
    const t = s.serviceTarget("10.96.0.10", 80);
    expect(t?.service.name).toBe("echo");
    expect(t?.endpoints.map((e) => [e.workload.name, e.ip, e.port])).toEqual([
      ["echo-a", "10.0.0.1", 8080],
      ["echo-b", "10.0.0.2", 9090],
    ]);
    expect(s.serviceTarget("10.96.0.10", 81)).toBeUndefined();
    expect(s.serviceByVip("10.96.0.11")).toBeUndefined();
    expect(s.serviceByVip("10.96.0.11", "net1")?.name).toBe("echo");
    expect((await loaded(() => 0)).pickEndpoint("10.96.0.10", 80)?.endpoint.workload.name).toBe("echo-a");
    expect((await loaded(() => 0.99)).pickEndpoint("10.96.0.10", 80)?.endpoint.workload.name).toBe("echo-b");
  });

  it("never picks an unhealthy endpoint", async () => {
    const s = new WorkloadStore(() => 0);
    s.replace(
      parseLocalConfig(`
workloads:
  - {name: a, namespace: n, workloadIps: [10.0.0.1], status: Unhealthy, services: {"n/h": {}}}
services:
  - {name: s, namespace: n, hostname: h, vips: [10.96.0.1], ports: {"80": 0}}
`),
      "t",
    );
    expect(s.serviceTarget("10.96.0.1", 80)?.endpoints).toHaveLength(1);
    expect(s.serviceTarget("10.96.0.1", 80)?.endpoints[0]?.port).toBe(80);
    expect(s.pickEndpoint("10.96.0.1", 80)).toBeUndefined();
  });

  it("versions grow; snapshots survive structured clone and older ones are ignored", async () => {
    const main = await loaded();
    const v1 = main.snapshot();
    main.replace(parseLocalConfig(""), "empty");
    const v2 = main.snapshot();
    expect(v2.version).toBe(v1.version + 1);

    const worker = new WorkloadStore();
    const seen: number[] = [];
    worker.onChange((v) => seen.push(v));
    expect(worker.applySnapshot(structuredClone(v1))).toBe(true);
    expect(worker.workloadByIp("10.0.0.2")?.name).toBe("echo-b");
    expect(worker.applySnapshot(structuredClone(v2))).toBe(true);
    expect(worker.workloadByIp("10.0.0.2")).toBeUndefined();
    expect(worker.applySnapshot(structuredClone(v1))).toBe(false);
    expect(worker.version).toBe(v2.version);
    expect(seen).toEqual([v1.version, v2.version]);
  });
});

describe("FileStateSource", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  it("refuses to start on a bad file", async () => {
    const d = await tempDir("state");
    cleanups.push(d.cleanup);
    const path = join(d.path, "local.yaml");
    await writeFile(path, "workloads: [{name: a}]");
    const src = new FileStateSource(path);
    await expect(src.start(new WorkloadStore())).rejects.toThrow(/workloads\[0\]\.namespace: is required/);
    await src.close();
  });

  it("reloads on change, keeps the old state on a bad file, and follows rename-replace", async () => {
    const d = await tempDir("state");
    cleanups.push(d.cleanup);
    const path = join(d.path, "local.yaml");
    await writeFile(path, await text());
    const results: Array<{ ok: boolean; error?: Error }> = [];
    let notify: () => void = () => {};
    const next = () => new Promise<void>((r) => (notify = r));
    const store = new WorkloadStore();
    const src = new FileStateSource(path, {
      debounceMs: 20,
      onReload: (r) => {
        results.push(r);
        notify();
      },
    });
    cleanups.push(() => src.close());
    await src.start(store);
    expect(store.version).toBe(1);
    expect(store.workloadByIp("10.0.0.1")?.name).toBe("echo-a");

    let waiting = next();
    await writeFile(path, "workloads: [{name: a, namespace: n, workloadIps: [10.0.0.x]}]");
    await waiting;
    expect(results.at(-1)?.ok).toBe(false);
    expect(results.at(-1)?.error?.message).toContain("workloads[0].workloadIps[0]");
    expect(store.version).toBe(1);
    expect(store.workloadByIp("10.0.0.1")?.name).toBe("echo-a");

    waiting = next();
    await writeFile(join(d.path, "new.tmp"), "workloads: [{name: z, namespace: n, workloadIps: [10.0.0.50]}]");
    await rename(join(d.path, "new.tmp"), path);
    await waiting;
    expect(results.at(-1)?.ok).toBe(true);
    expect(store.version).toBe(2);
    expect(store.workloadByIp("10.0.0.50")?.name).toBe("z");
    expect(store.workloadByIp("10.0.0.1")).toBeUndefined();
  });
});

describe("ip helpers", () => {
  it("canonicalises and formats authorities", () => {
    expect(canonicalIp("FD00:0::1")).toBe("fd00::1");
    expect(canonicalIp("::ffff:192.168.1.2")).toBe("192.168.1.2");
    // The mapped form in other spellings (upper case, hex words) gives the same IPv4 address.
    expect(canonicalIp("::FFFF:192.168.1.2")).toBe("192.168.1.2");
    expect(canonicalIp("::ffff:c0a8:102")).toBe("192.168.1.2");
    expect(canonicalIp("0:0:0:0:0:ffff:192.168.1.2")).toBe("192.168.1.2");
    // Not mapped: an IPv6 address that merely ends in a dotted quad stays IPv6.
    expect(canonicalIp("::1:192.168.1.2")).toBe("::1:c0a8:102");
    expect(canonicalIp("host")).toBeUndefined();
    expect(formatHostPort("fd00::1", 80)).toBe("[fd00::1]:80");
    expect(formatHostPort("10.0.0.1", 80)).toBe("10.0.0.1:80");
    expect(parseHostPort("[fd00::1]:8080")).toEqual({ ip: "fd00::1", port: 8080 });
    expect(parseHostPort("10.0.0.1:8080")).toEqual({ ip: "10.0.0.1", port: 8080 });
    for (const bad of ["fd00::1:80", "10.0.0.1", "example.com:80", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.256:80"]) {
      expect(parseHostPort(bad)).toBeUndefined();
    }
  });
});
