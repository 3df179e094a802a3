import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createSocket } from "../../src/native/index.js";
import { ADDRESS_TYPE_URL } from "../../src/ztunnel/xds/proto.js";
import { Mesh, readAll, waitFor } from "../fixtures/ztunnel-e2e-cluster.js";
import { FakeIstiod, FakeWaypoint, hboneConnect, serviceAddress, workloadAddress, workloadCerts } from "../harness/fake-istiod/index.js";
import { killAndWait } from "../harness/netns.js";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";

// ztunnel in istiod mode end to end (DESIGN §10, §13): 2 node netns, one ztunnel per node with
// only istiod's settings (XDS_ADDRESS, root, projected token, its pod identity), our fake
// istiod reached through a listening socket made inside each node netns. The fake pushes
// workloads, services and policies over delta xDS and signs every pod certificate; the test
// plays the node agent (rules + ZDS).

const APP_PORT = 8080;
const ECHO_PORT = 9090;
const TRUST_DOMAIN = "cluster.local";
// Short, so the half-life rotation happens within the test (renewal ~7 s after issuance).
const SECRET_TTL_S = 16;

describePrivileged("ztunnel in istiod mode: xDS and CA from a fake istiod", () => {
  let istiod: FakeIstiod | undefined;
  let mesh: Mesh | undefined;
  let dir = "";
  const ports = new Map<number, number>();
  let a0: PodInfo; // node 0
  let a1: PodInfo; // node 0
  let b0: PodInfo; // node 1
  let b1: PodInfo; // node 1
  let waypoint: FakeWaypoint | undefined;

  const m = (): Mesh => mesh!;
  const fake = (): FakeIstiod => istiod!;
  // istiod's uid for a pod; ZDS carries another (the fixture's, as Kubernetes' pod UID would be):
  // ztunnel matches them by namespace/name.
  const uidOf = (p: PodInfo): string => `Kubernetes//Pod/default/${p.name}`;
  const idOf = (p: PodInfo): string => `spiffe://${TRUST_DOMAIN}/ns/default/sa/sa-${p.name}`;

  const istiodEnv = (node: number): Record<string, string> => ({
    XDS_ADDRESS: `https://127.0.0.1:${ports.get(node) ?? 0}`,
    XDS_ROOT_CA: join(dir, "istio-root.pem"),
    ISTIO_TOKEN_PATH: join(dir, `token-n${node}`),
    POD_NAME: `ztunnel-n${node}`,
    POD_NAMESPACE: "istio-system",
    INSTANCE_IP: m().topo.node(node).ip,
    SECRET_TTL: `${SECRET_TTL_S}s`,
    ISTIO_META_ENABLE_HBONE: "true",
  });

  async function whoAnswers(from: PodInfo, host: string, port: number): Promise<string> {
    const c = await m().dial(from, host, port);
    const got = readAll(c);
    c.end();
    return (await got).toString().trim();
  }

  /** Waits until a node's source ztunnel logs a 401 for a connection from `from`. */
  async function expectDenied(node: number, from: PodInfo, to: PodInfo): Promise<void> {
    const before = m().accessLog(node).length;
    expect(await whoAnswers(from, to.ip, APP_PORT).catch(() => "")).toBe("");
    await waitFor(
      () => m().accessLog(node).slice(before).some((l) => l.direction === "outbound" && String(l.error ?? "").includes("answered 401") && l["src.workload"] === from.name),
      5_000,
      () => `no 401 at the source for ${from.name} → ${to.name}:\n${m().logs(node, 15)}`,
    );
  }

  async function restartNode(node: number, env: Record<string, string> = {}, waitReady = true): Promise<void> {
    const child = m().node(node).ztunnel;
    if (child !== undefined && child.exitCode === null) await killAndWait(child, "SIGKILL");
    await m().startZtunnel(node, env, waitReady);
  }

  beforeAll(async () => {
    istiod = await FakeIstiod.start({ tokens: { "token-node0": "node0", "token-node1": "node1" } });
    dir = await mkdtemp(join(tmpdir(), "ztunnel-istiod-"));
    await writeFile(join(dir, "istio-root.pem"), istiod.rootPem);
    await writeFile(join(dir, "token-n0"), "token-node0\n");
    await writeFile(join(dir, "token-n1"), "token-node1\n");
    await writeFile(join(dir, "token-wrong"), "not-a-token\n");
    // One uncaptured pod on node 1 (its own netns) plays the waypoint.
    mesh = await Mesh.create({ istiod: istiodEnv, env: { TRUST_DOMAIN }, uncaptured: 1 });
    for (const node of mesh.topo.nodes) {
      const fd = createSocket(mesh.netns(node.netnsPath), { family: 4, type: "tcp", bind: { address: "127.0.0.1", port: 0 }, listen: { backlog: 64 } });
      ports.set(node.index, await istiod.addListener({ fd }));
    }
    a0 = mesh.topo.pod(0, 0);
    a1 = mesh.topo.pod(0, 1);
    b0 = mesh.topo.pod(1, 0);
    b1 = mesh.topo.pod(1, 1);
    for (const pod of mesh.captured) {
      istiod.setAddress(uidOf(pod), workloadAddress({ uid: uidOf(pod), name: pod.name, namespace: "default", serviceAccount: `sa-${pod.name}`, ips: [pod.ip], node: `node${pod.node}` }));
      await mesh.app(pod, APP_PORT, (s) => s.end(`${pod.name}\n`));
    }
    await mesh.app(b1, ECHO_PORT, (s) => s.pipe(s));
    await Promise.all([mesh.startZtunnel(0), mesh.startZtunnel(1)]);
  }, 60_000);

  afterAll(async () => {
    waypoint?.close();
    await mesh?.destroy();
    await istiod?.stop();
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  it("starts from istiod alone: the log names the source, workloads arrive, pods get istiod certificates for their own node only", async () => {
    for (const node of [0, 1]) {
      expect(m().logs(node, 400)).toMatch(/workload state and certificates from istiod/);
      const dump = (await m().configDump(node)) as unknown as { workloads: Array<{ uid: string; protocol: string }>; source: { mode: string; xds: { nodeId: string } } };
      expect(dump.source.mode).toBe("istiod");
      expect(dump.source.xds.nodeId).toBe(`ztunnel~${m().topo.node(node).ip}~ztunnel-n${node}.istio-system~istio-system.svc.cluster.local`);
      for (const pod of m().captured) expect(dump.workloads.find((w) => w.uid === uidOf(pod))).toMatchObject({ protocol: "HBONE" });
    }
    const signed = fake().caRequests.filter((r) => r.ok);
    expect(new Set(signed.filter((r) => r.node === "node0").map((r) => r.identity))).toEqual(new Set([idOf(a0), idOf(a1)]));
    expect(new Set(signed.filter((r) => r.node === "node1").map((r) => r.identity))).toEqual(new Set([idOf(b0), idOf(b1)]));
    expect(signed.every((r) => r.ttlSeconds === SECRET_TTL_S)).toBe(true);
    const metrics = (await m().http(0, 15020, "/metrics")).body;
    expect(metrics).toMatch(/istio_xds_message_total\{url="type\.googleapis\.com\/istio\.workload\.Address"\} [1-9]/);
    expect(metrics).toMatch(/istio_xds_message_bytes_total\{url="type\.googleapis\.com\/istio\.security\.Authorization"\} [0-9]/);
    expect(metrics).toMatch(/istio_build\{component="ztunnel",tag="[^"]+"\} 1/);
    const certs = (await m().configDump(0)).certificates.map((c) => c.identity);
    expect(certs).toEqual(expect.arrayContaining([idOf(a0), idOf(a1)]));
  });

  it("pods talk across nodes over HBONE with istiod's certificates (intermediate sent, root from XDS_ROOT_CA)", async () => {
    const before = m().accessLog(0).length;
    expect(await whoAnswers(a0, b0.ip, APP_PORT)).toBe(b0.name);
    await waitFor(
      () => m().accessLog(0).slice(before).some((r) => r.direction === "outbound" && r["dst.hbone_addr"] === `${b0.ip}:15008` && r["dst.identity"] === idOf(b0)),
      3_000,
      () => `no outbound HBONE record\n${m().logs(0, 20)}`,
    );
    await waitFor(() => m().accessLog(1).some((r) => r.direction === "inbound" && r["src.identity"] === idOf(a0)), 3_000, () => "no inbound record with a0's identity");
    // The source pod's own workload is found though ZDS and istiod name it by different uids.
    await waitFor(
      async () => /istio_tcp_connections_opened_total\{[^}]*reporter="source"[^}]*source_workload="n0p0"/.test((await m().http(0, 15020, "/metrics")).body),
      3_000,
      () => "no source metrics labelled with the source workload",
    );
  });

  it("a pushed Service VIP is routed to its endpoint", async () => {
    const vip = "10.96.7.7";
    const host = "web.default.svc.cluster.local";
    fake().setAddress(`default/${host}`, serviceAddress({ name: "web", namespace: "default", hostname: host, vips: [vip], ports: [{ servicePort: 80, targetPort: APP_PORT }] }));
    fake().setAddress(uidOf(b0), workloadAddress({ uid: uidOf(b0), name: b0.name, namespace: "default", serviceAccount: `sa-${b0.name}`, ips: [b0.ip], node: "node1", services: { [`default/${host}`]: [{ servicePort: 80, targetPort: APP_PORT }] } }));
    fake().push();
    await waitFor(async () => ((await m().configDump(0)) as unknown as { services: Array<{ hostname: string }> }).services.some((s) => s.hostname === host), 5_000, () => "service not on node 0");
    await new Promise((r) => setTimeout(r, 100));
    expect(await whoAnswers(a0, vip, 80)).toBe(b0.name);
  });

  it("an xDS DENY policy gives 401 across nodes; removing it lets traffic through again", async () => {
    fake().setAuthorization("default/deny-a0", {
      name: "deny-a0",
      namespace: "default",
      scope: "NAMESPACE",
      action: "DENY",
      rules: [{ clauses: [{ matches: [{ principals: [{ exact: `${TRUST_DOMAIN}/ns/default/sa/sa-${a0.name}` }] }] }] }],
    });
    fake().push();
    await waitFor(async () => (await m().configDump(1)).policies.length === 1, 5_000, () => "policy not on node 1");
    await new Promise((r) => setTimeout(r, 100));
    await expectDenied(0, a0, b0);
    // Only a0 is denied.
    expect(await whoAnswers(a1, b0.ip, APP_PORT)).toBe(b0.name);
    fake().remove("type.googleapis.com/istio.security.Authorization", "default/deny-a0");
    fake().push();
    await waitFor(async () => (await m().configDump(1)).policies.length === 0, 5_000, () => "policy still on node 1");
    await new Promise((r) => setTimeout(r, 100));
    expect(await whoAnswers(a0, b0.ip, APP_PORT)).toBe(b0.name);
  });

  it("a malformed resource is NACKed with its name; everything else keeps working", async () => {
    const before = fake().requests.length;
    fake().setRaw(ADDRESS_TYPE_URL, "Kubernetes//Pod/default/garbage", Buffer.from([0x0a, 0x05, 0x0a, 0xff]));
    fake().push();
    await waitFor(() => fake().requests.slice(before).filter((r) => r.errorDetail?.message.includes("Kubernetes//Pod/default/garbage") === true).length >= 2, 5_000, () => "no NACK from both nodes");
    const dump = (await m().configDump(0)) as unknown as { source: { rejected: Record<string, Array<{ name: string }>> } };
    expect(dump.source.rejected[ADDRESS_TYPE_URL]?.map((r) => r.name)).toEqual(["Kubernetes//Pod/default/garbage"]);
    expect(await whoAnswers(a0, b1.ip, APP_PORT)).toBe(b1.name);
    expect((await m().readiness(0)).status).toBe(200);
    fake().remove(ADDRESS_TYPE_URL, "Kubernetes//Pod/default/garbage");
    fake().push();
  });

  it("istiod restarts: ztunnels keep serving (established and new connections), then reconnect and re-subscribe with their versions", async () => {
    const streamsBefore = new Set(fake().requests.map((r) => r.stream));
    const long: Socket = await m().dial(a0, b1.ip, ECHO_PORT);
    const restart = fake().restart(2_000);
    // While istiod is down: new connections across nodes work.
    for (let i = 0; i < 5; i++) {
      expect(await whoAnswers(a1, b0.ip, APP_PORT)).toBe(b0.name);
      await new Promise((r) => setTimeout(r, 250));
    }
    await restart;
    // The connection made before the restart still carries data.
    long.write("ping\n");
    const echoed = await new Promise<string>((resolve, reject) => {
      long.once("data", (d: Buffer) => resolve(d.toString()));
      long.once("error", reject);
    });
    expect(echoed).toBe("ping\n");
    long.end();
    await waitFor(
      () => {
        const fresh = fake().requests.filter((r) => !streamsBefore.has(r.stream) && r.nonce === "" && r.typeUrl === ADDRESS_TYPE_URL);
        return new Set(fresh.map((r) => r.nodeId)).size === 2;
      },
      20_000,
      () => `both ztunnels did not re-subscribe:\n${m().logs(0, 10)}`,
    );
    const resub = fake().requests.filter((r) => !streamsBefore.has(r.stream) && r.nonce === "" && r.typeUrl === ADDRESS_TYPE_URL);
    for (const r of resub) expect(Object.keys(r.initialVersions)).toEqual(expect.arrayContaining(m().captured.map(uidOf)));
    await waitFor(async () => (await m().readiness(0)).status === 200 && (await m().readiness(1)).status === 200, 10_000, () => "not ready after the reconnect");
    expect((await m().http(0, 15020, "/metrics")).body).toMatch(/istio_xds_connection_terminations_total\{reason="(Error|Reconnect|ConnectionError)"\} [1-9]/);
  });

  it("a pod certificate from istiod is rotated at half life under traffic with no failed connection", async () => {
    const signedFor = (): number => fake().caRequests.filter((r) => r.ok && r.identity === idOf(b0) && r.node === "node1").length;
    const current = async (): Promise<{ serial: string; notBefore: string; notAfter: string } | undefined> => (await m().configDump(1)).certificates.find((c) => c.identity === idOf(b0));
    const serial = async (): Promise<string | undefined> => (await current())?.serial;
    const firstCert = await current();
    const first = firstCert?.serial;
    const before = signedFor();
    const deadline = Date.now() + SECRET_TTL_S * 1000 + 5_000;
    let ok = 0;
    while (Date.now() < deadline && !(signedFor() > before && ok > 3 && (await serial()) !== first)) {
      expect(await whoAnswers(a0, b0.ip, APP_PORT)).toBe(b0.name);
      ok++;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(signedFor()).toBeGreaterThan(before);
    expect(await serial()).not.toBe(first);
    // Renewed at (about) half of the lifetime: between 40% (10% jitter, clock rounding) and 60%.
    const renewed = await current();
    const lifetime = Date.parse(firstCert!.notAfter) - Date.parse(firstCert!.notBefore);
    const after = Date.parse(renewed!.notBefore) - Date.parse(firstCert!.notBefore);
    expect(after).toBeGreaterThanOrEqual(lifetime * 0.4 - 1_000);
    expect(after).toBeLessThanOrEqual(lifetime * 0.6 + 1_000);
    // And after the renewal, still fine.
    expect(await whoAnswers(a0, b0.ip, APP_PORT)).toBe(b0.name);
  }, 40_000);

  it("waypoints: service and workload traffic goes to the waypoint over HBONE with the original destination as authority and the waypoint's identity; bypassing it is refused", async () => {
    const wpPod = m().uncaptured[0]!;
    const wpId = `spiffe://${TRUST_DOMAIN}/ns/default/sa/waypoint`;
    const vip = "10.96.9.9";
    const host = "shop.default.svc.cluster.local";
    const certs = workloadCerts(fake().pki, wpId);
    // The waypoint knows where the service's endpoint and the pods are (as Envoy would).
    waypoint = await FakeWaypoint.start(m().factory(wpPod.netnsPath), 15008, certs, (authority) => {
      if (authority === `${vip}:80`) return { host: b0.ip, port: 15008, authority: `${b0.ip}:${APP_PORT}` };
      const pod = m().captured.find((p) => authority === `${p.ip}:${APP_PORT}`);
      return pod === undefined ? undefined : { host: pod.ip, port: 15008, authority };
    });
    fake().setAddress("Kubernetes//Pod/default/waypoint", workloadAddress({ uid: "Kubernetes//Pod/default/waypoint", name: "waypoint", namespace: "default", serviceAccount: "waypoint", ips: [wpPod.ip], node: "node1" }));
    fake().setAddress(`default/${host}`, serviceAddress({ name: "shop", namespace: "default", hostname: host, vips: [vip], ports: [{ servicePort: 80, targetPort: APP_PORT }], waypoint: { ip: wpPod.ip } }));
    fake().setAddress(uidOf(b0), workloadAddress({ uid: uidOf(b0), name: b0.name, namespace: "default", serviceAccount: `sa-${b0.name}`, ips: [b0.ip], node: "node1", services: { [`default/${host}`]: [{ servicePort: 80, targetPort: APP_PORT }] } }));
    fake().setAddress(uidOf(b1), workloadAddress({ uid: uidOf(b1), name: b1.name, namespace: "default", serviceAccount: `sa-${b1.name}`, ips: [b1.ip], node: "node1", waypoint: { ip: wpPod.ip } }));
    fake().push();
    await waitFor(
      async () => ((await m().configDump(0)) as unknown as { services: Array<{ hostname: string; waypointRoute?: unknown }> }).services.some((s) => s.hostname === host && s.waypointRoute !== undefined),
      5_000,
      () => "waypoint service not routed on node 0",
    );
    await waitFor(
      async () => ((await m().configDump(1)) as unknown as { workloads: Array<{ uid: string; waypointRoute?: unknown }> }).workloads.some((w) => w.uid === uidOf(b1) && w.waypointRoute !== undefined),
      5_000,
      () => "b1's waypoint not routed on node 1",
    );
    await new Promise((r) => setTimeout(r, 100));

    // Service traffic: to the waypoint, authority = the service address as dialled.
    const before = m().accessLog(0).length;
    expect(await whoAnswers(a0, vip, 80)).toBe(b0.name);
    expect(waypoint.records.at(-1)).toEqual({ authority: `${vip}:80`, peer: idOf(a0) });
    await waitFor(
      () => m().accessLog(0).slice(before).some((r) => r.direction === "outbound" && r["dst.hbone_addr"] === `${wpPod.ip}:15008`),
      3_000,
      () => `no outbound record through the waypoint\n${m().logs(0, 10)}`,
    );
    // Workload traffic: to its waypoint, authority = the pod address; the waypoint's forward is accepted.
    expect(await whoAnswers(a0, b1.ip, APP_PORT)).toBe(b1.name);
    expect(waypoint.records.at(-1)).toEqual({ authority: `${b1.ip}:${APP_PORT}`, peer: idOf(a0) });
    // b1 answered through the waypoint: its ztunnel accepted the waypoint's HBONE stream, as the waypoint.
    await waitFor(
      () => m().accessLog(1).some((r) => r.direction === "inbound" && r["src.identity"] === wpId && r["dst.workload"] === b1.name && r.error === undefined),
      10_000,
      () => `b1's ztunnel logged no inbound from the waypoint\n${m().logs(1, 10)}`,
    );
    // Straight to b1's ztunnel with another identity: refused (it would bypass the waypoint).
    const intruder = await hboneConnect(m().factory(wpPod.netnsPath), { host: b1.ip, port: 15008 }, `${b1.ip}:${APP_PORT}`, workloadCerts(fake().pki, `spiffe://${TRUST_DOMAIN}/ns/default/sa/intruder`));
    expect(intruder.status).toBe(401);
    intruder.session.destroy();

    // Back to no waypoint for the tests that follow.
    fake().setAddress(uidOf(b1), workloadAddress({ uid: uidOf(b1), name: b1.name, namespace: "default", serviceAccount: `sa-${b1.name}`, ips: [b1.ip], node: "node1" }));
    fake().push();
    await waitFor(
      async () => ((await m().configDump(0)) as unknown as { workloads: Array<{ uid: string; waypointRoute?: unknown }> }).workloads.some((w) => w.uid === uidOf(b1) && w.waypointRoute === undefined),
      5_000,
      () => "b1 still behind the waypoint",
    );
    await new Promise((r) => setTimeout(r, 100));
    expect(await whoAnswers(a0, b1.ip, APP_PORT)).toBe(b1.name);
  });

  it("a pod added while istiod's CA is down is not served (fail closed), config_dump says why, and it is served once the CA is back", async () => {
    fake().caDown = true;
    const late = await m().addCapturedPod(0, "late");
    fake().setAddress(uidOf(late), workloadAddress({ uid: uidOf(late), name: late.name, namespace: "default", serviceAccount: `sa-${late.name}`, ips: [late.ip], node: "node0" }));
    fake().push();
    await m().app(late, APP_PORT, (s) => s.end(`${late.name}\n`));
    await waitFor(async () => ((await m().configDump(0)) as unknown as { workloads: Array<{ uid: string }> }).workloads.some((w) => w.uid === uidOf(late)), 5_000, () => "late not in the state");
    try {
      await m().enroll(late).catch(() => undefined);
      let state: { state?: string; lastError?: string } | undefined;
      await waitFor(
        async () => {
          state = ((await m().configDump(0)) as unknown as { workloadState: Record<string, { state?: string; lastError?: string }> }).workloadState[m().uid(late)];
          return state !== undefined && state.state !== "Up" && (state.lastError ?? "").includes("UNAVAILABLE");
        },
        15_000,
        () => `config_dump does not say why late is not served: ${JSON.stringify(state)}`,
      );
      // Fail closed: nothing serves it, no other identity, no plaintext.
      expect(await whoAnswers(b0, late.ip, APP_PORT).catch(() => "")).toBe("");
    } finally {
      fake().caDown = false;
    }
    await waitFor(async () => (await whoAnswers(b0, late.ip, APP_PORT).catch(() => "")) === late.name, 30_000, () => `late not served after the CA came back\n${m().logs(0, 10)}`);
    expect(fake().caRequests.some((r) => r.ok && r.identity === idOf(late) && r.node === "node0")).toBe(true);
  }, 60_000);

  it("a new pod is served from its ZDS Add before istiod publishes it (istiod waits for the pod's IP, which comes after the CNI ADD)", async () => {
    const fresh = await m().addCapturedPod(0, "fresh");
    // The API has the pod on node 0 (so istiod's CA may sign for it); no Address yet.
    fake().setScheduledPod(`default/${fresh.name}`, { node: "node0", identity: idOf(fresh) });
    await m().app(fresh, APP_PORT, (s) => s.end(`${fresh.name}\n`));
    await m().enroll(fresh); // the Add is acknowledged: the CNI ADD would succeed
    expect(m().logs(0, 50)).toMatch(/the workload state does not have the pod yet/);
    // Outbound works at once, with the identity from ZDS and istiod's certificate for it.
    const before = m().accessLog(1).length;
    expect(await whoAnswers(fresh, b0.ip, APP_PORT)).toBe(b0.name);
    await waitFor(() => m().accessLog(1).slice(before).some((r) => r.direction === "inbound" && r["src.identity"] === idOf(fresh)), 3_000, () => "no inbound record with fresh's identity");
    // istiod publishes the workload once the kubelet reports its IP: inbound HBONE to it works.
    fake().setAddress(uidOf(fresh), workloadAddress({ uid: uidOf(fresh), name: fresh.name, namespace: "default", serviceAccount: `sa-${fresh.name}`, ips: [fresh.ip], node: "node0" }));
    fake().push();
    // Until node 1 has the workload, b0's connections to the unknown IP leave as plain TCP; once
    // it has, they arrive over HBONE at fresh's rebuilt inbound listener.
    const viaHbone = (): boolean => m().accessLog(0).some((r) => r.direction === "inbound" && r["src.identity"] === idOf(b0) && r["dst.workload"] === fresh.name);
    await waitFor(
      async () => (await whoAnswers(b0, fresh.ip, APP_PORT).catch(() => "")) === fresh.name && viaHbone(),
      10_000,
      () => `no HBONE connection reached fresh after istiod published it\n${m().logs(0, 10)}`,
    );
  }, 60_000);

  it("istiod unreachable at start: the node's pods are not served and readiness says why", async () => {
    await restartNode(1, { XDS_ADDRESS: "https://127.0.0.1:1" }, false);
    let body = "";
    await waitFor(
      async () => {
        const r = await m().readiness(1);
        body = r.body;
        return r.status !== 200 && /waiting for the first xDS sync from https:\/\/127\.0\.0\.1:1/.test(r.body) && /UNAVAILABLE/.test(r.body);
      },
      15_000,
      () => `readiness does not say why: ${body}\n${m().logs(1, 20)}`,
    );
    // Fail closed: nothing listens for b0 on node 1, so a0 cannot reach it.
    expect(await whoAnswers(a0, b0.ip, APP_PORT).catch(() => "")).toBe("");
    const dump = (await m().configDump(1)) as unknown as { workloadState: Record<string, { state: string; lastError?: string }> };
    expect(dump.workloadState[m().uid(b0)]?.state).not.toBe("Up");
    await restartNode(1);
    expect(await whoAnswers(a0, b0.ip, APP_PORT)).toBe(b0.name);
  }, 60_000);

  it("a wrong token: readiness and the log name the token file", async () => {
    const tokenPath = join(dir, "token-wrong");
    await restartNode(1, { ISTIO_TOKEN_PATH: tokenPath }, false);
    let body = "";
    await waitFor(
      async () => {
        const r = await m().readiness(1);
        body = r.body;
        return r.status !== 200 && r.body.includes("UNAUTHENTICATED") && r.body.includes(tokenPath);
      },
      15_000,
      () => `readiness does not name the token: ${body}\n${m().logs(1, 20)}`,
    );
    expect(m().logs(1, 200)).toContain(tokenPath);
    await restartNode(1);
  }, 60_000);
});
