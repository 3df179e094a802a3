import { X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { selectMeshSource, type MeshSource } from "../../src/ztunnel/cluster/select.js";
import { loadConfig } from "../../src/ztunnel/config.js";
import { WorkloadStore } from "../../src/ztunnel/state/store.js";
import { makeIdentity } from "../../src/ztunnel/tls/identity.js";
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from "../../src/ztunnel/xds/proto.js";
import { FakeIstiod, serviceAddress, workloadAddress } from "../harness/fake-istiod/index.js";
import { waitFor } from "../fixtures/ztunnel-e2e-cluster.js";

// The istiod client against our fake istiod over loopback TLS: delta xDS (subscriptions, ACK
// by nonce, NACK naming the refused resource, removals, reconnect with the versions held) and
// the CA (impersonation, chain checks, token errors naming the file).

const log = pino({ level: "silent" });

describe("istiod mode against a fake istiod", () => {
  let istiod: FakeIstiod;
  let dir: string;
  let port: number;
  let mesh: MeshSource | undefined;
  const store = new WorkloadStore();

  const env = (extra: Record<string, string> = {}): Record<string, string> => ({
    XDS_ADDRESS: `https://127.0.0.1:${port}`,
    XDS_ROOT_CA: join(dir, "root-cert.pem"),
    ISTIO_TOKEN_PATH: join(dir, "istio-token"),
    POD_NAME: "ztunnel-abc",
    POD_NAMESPACE: "istio-system",
    INSTANCE_IP: "10.0.0.9",
    NODE_NAME: "node0",
    ISTIO_META_FOO: "bar",
    XDS_HEADER_X_TEST: "yes",
    SECRET_TTL: "1h",
    ...extra,
  });

  beforeAll(async () => {
    istiod = await FakeIstiod.start({ tokens: { "tok-node0": "node0" } });
    port = await istiod.addListener({ host: "127.0.0.1" });
    dir = await mkdtemp(join(tmpdir(), "zt-xds-"));
    await writeFile(join(dir, "root-cert.pem"), istiod.rootPem);
    await writeFile(join(dir, "istio-token"), "tok-node0\n");
    istiod.setAddress("Kubernetes//Pod/default/a", workloadAddress({ uid: "Kubernetes//Pod/default/a", name: "a", namespace: "default", serviceAccount: "sa-a", ips: ["10.1.0.2"], node: "node0", services: { "default/web.default.svc.cluster.local": [{ servicePort: 80, targetPort: 8080 }] } }));
    istiod.setAddress("Kubernetes//Pod/default/b", workloadAddress({ uid: "Kubernetes//Pod/default/b", name: "b", namespace: "default", serviceAccount: "sa-b", ips: ["10.1.1.2"], node: "node1" }));
    istiod.setAddress("default/web.default.svc.cluster.local", serviceAddress({ name: "web", namespace: "default", hostname: "web.default.svc.cluster.local", vips: ["10.96.0.10"], ports: [{ servicePort: 80, targetPort: 8080 }] }));
    istiod.setAuthorization("default/deny-b", { name: "deny-b", namespace: "default", scope: "NAMESPACE", action: "DENY", rules: [{ clauses: [{ matches: [{ principals: [{ exact: "cluster.local/ns/default/sa/sa-b" }] }] }] }] });
  });

  afterAll(async () => {
    await mesh?.close();
    await istiod.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("selects istiod mode from XDS_ADDRESS, subscribes wildcard with the node id, and fills the store", async () => {
    const e = env();
    mesh = await selectMeshSource(loadConfig(e), e, { log, istiod: { backoff: { baseMs: 50, maxMs: 200 } } });
    expect(mesh.mode).toBe("istiod");
    expect(mesh.reason).toMatch(/XDS_ADDRESS=https:\/\/127\.0\.0\.1/);
    await mesh.source.start(store);
    await waitFor(() => mesh!.notReady().length === 0, 10_000, () => mesh!.notReady().join("; "));
    const first = istiod.requests.filter((r) => r.nonce === "");
    expect(first.map((r) => r.typeUrl)).toEqual([ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]);
    expect(first[0]?.nodeId).toBe("ztunnel~10.0.0.9~ztunnel-abc.istio-system~istio-system.svc.cluster.local");
    expect(first.every((r) => r.subscribe.length === 0)).toBe(true);
    expect(first[0]?.nodeMeta).toMatchObject({ FOO: "bar", CLUSTER_ID: "Kubernetes", NODE_NAME: "node0" });
    expect(first[0]?.headers).toMatchObject({ authorization: "Bearer tok-node0", clusterid: "Kubernetes", x_test: "yes" });
    await waitFor(() => istiod.requests.filter((r) => r.nonce !== "").length >= 2, 5_000, () => "no ACKs");
    expect(istiod.nacks()).toEqual([]);
    expect(store.workloadByIp("10.1.0.2")?.uid).toBe("Kubernetes//Pod/default/a");
    expect(store.serviceByVip("10.96.0.10")?.hostname).toBe("web.default.svc.cluster.local");
    expect(store.pickEndpoint("10.96.0.10", 80)?.endpoint).toMatchObject({ ip: "10.1.0.2", port: 8080 });
    expect(store.state.policies).toEqual([
      { name: "deny-b", namespace: "default", scope: "Namespace", action: "Deny", dryRun: false, rules: [[[{ principals: [{ kind: "exact", value: "cluster.local/ns/default/sa/sa-b" }] }]]] },
    ]);
  });

  it("a malformed resource is NACKed with its name; the rest of the push applies and the old state stays", async () => {
    const before = istiod.requests.length;
    istiod.setRaw(ADDRESS_TYPE_URL, "Kubernetes//Pod/default/broken", Buffer.from([0x0a, 0xff, 0x01]));
    istiod.setAddress("Kubernetes//Pod/default/c", workloadAddress({ uid: "Kubernetes//Pod/default/c", name: "c", namespace: "default", serviceAccount: "sa-c", ips: ["10.1.0.3"], node: "node0" }));
    istiod.push();
    await waitFor(() => istiod.requests.slice(before).some((r) => r.errorDetail !== undefined), 5_000, () => "no NACK");
    const nack = istiod.requests.slice(before).find((r) => r.errorDetail !== undefined);
    expect(nack?.errorDetail?.message).toContain("Kubernetes//Pod/default/broken");
    expect(nack?.nonce).not.toBe("");
    expect(store.workloadByIp("10.1.0.3")?.name).toBe("c");
    expect(store.workloadByIp("10.1.0.2")?.name).toBe("a");
    const dump = mesh!.dump!() as { rejected: Record<string, Array<{ name: string }>> };
    expect(dump.rejected[ADDRESS_TYPE_URL]?.[0]?.name).toBe("Kubernetes//Pod/default/broken");
    istiod.remove(ADDRESS_TYPE_URL, "Kubernetes//Pod/default/broken");
    istiod.push();
  });

  it("a removal takes the workload out of the store", async () => {
    istiod.remove(ADDRESS_TYPE_URL, "Kubernetes//Pod/default/c");
    istiod.push();
    await waitFor(() => store.workloadByIp("10.1.0.3") === undefined, 5_000, () => "workload c still there");
  });

  it("istiod restarts: state is kept while down, the client reconnects with the versions it holds", async () => {
    const streamsBefore = new Set(istiod.requests.map((r) => r.stream)).size;
    const restart = istiod.restart(500);
    await waitFor(() => mesh!.notReady().length === 0 && store.workloadByIp("10.1.0.2") !== undefined, 1_000, () => "state lost");
    await restart;
    await waitFor(() => new Set(istiod.requests.map((r) => r.stream)).size > streamsBefore, 10_000, () => "no reconnect");
    const resub = istiod.requests.filter((r) => r.nonce === "" && r.typeUrl === ADDRESS_TYPE_URL).at(-1);
    expect(Object.keys(resub?.initialVersions ?? {}).sort()).toEqual(["Kubernetes//Pod/default/a", "Kubernetes//Pod/default/b", "default/web.default.svc.cluster.local"]);
    expect(store.workloadByIp("10.1.0.2")?.name).toBe("a");
  });

  it("an undecodable response message: the stream is dropped and re-made, the state kept", async () => {
    const streamsBefore = new Set(istiod.requests.map((r) => r.stream)).size;
    istiod.sendRaw(Buffer.from([0x12, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    await waitFor(() => new Set(istiod.requests.map((r) => r.stream)).size > streamsBefore, 10_000, () => "no new stream after a garbage message");
    expect(store.workloadByIp("10.1.0.2")?.name).toBe("a");
    await waitFor(() => mesh!.notReady().length === 0, 5_000, () => mesh!.notReady().join("; "));
  });

  it("the CA signs a pod identity on this node: leaf for our id, intermediate sent, chain to the root", async () => {
    const issuer = mesh!.issuer(undefined);
    const cert = await issuer.issue(makeIdentity("cluster.local", "default", "sa-a"));
    const pems = cert.certPem.match(/-----BEGIN CERTIFICATE-----/g) ?? [];
    expect(pems.length).toBe(2); // leaf + intermediate, no root
    const leaf = new X509Certificate(cert.certPem);
    expect(leaf.subjectAltName).toBe("URI:spiffe://cluster.local/ns/default/sa/sa-a");
    expect(leaf.subject ?? "").toBe("");
    expect(cert.rootPem).toBe(istiod.rootPem);
    const rec = istiod.caRequests.at(-1);
    expect(rec).toMatchObject({ ok: true, identity: "spiffe://cluster.local/ns/default/sa/sa-a", node: "node0", ttlSeconds: 3600 });
  });

  it("the CA refuses an identity of another node; the error says why", async () => {
    await expect(mesh!.issuer(undefined).issue(makeIdentity("cluster.local", "default", "sa-b"))).rejects.toThrow(/PERMISSION_DENIED.*node node0 may not impersonate/);
  });

  it("a wrong token: the CA error names the token file", async () => {
    await writeFile(join(dir, "istio-token"), "wrong\n");
    try {
      await expect(mesh!.issuer(undefined).issue(makeIdentity("cluster.local", "default", "sa-a"))).rejects.toThrow(new RegExp(`UNAUTHENTICATED.*${join(dir, "istio-token")}`));
    } finally {
      await writeFile(join(dir, "istio-token"), "tok-node0\n");
    }
  });

  it("a missing token stops start-up with an error naming the file", async () => {
    const e = env({ ISTIO_TOKEN_PATH: join(dir, "nope") });
    await expect(selectMeshSource(loadConfig(e), e, { log })).rejects.toThrow(new RegExp(`istiod token ${join(dir, "nope")} cannot be read`));
  });
});
