import type { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { createZdsServer } from "../../src/zds/index.js";
import { killAndWait } from "../harness/netns.js";
import { describePrivileged } from "../harness/privileged.js";
import type { PodInfo } from "../harness/topology.js";
import { Mesh, readAll, waitFor } from "../fixtures/ztunnel-e2e-cluster.js";
import { nameEchoApps, upToFirstLine } from "../fixtures/ztunnel-e2e-suite.js";

// Issue 6 through real HBONE between two ztunnel processes in netns (2 nodes × 2 captured pods,
// one uncaptured pod, 2 workers each). The topology starts once; policies and services change
// through the local config file's hot reload. Destination: n1p0 in namespace "dest".
// Clients: n0p0 (alpha, other node), n0p1 (beta, other node), n1p1 (beta, same node),
// plain0 (uncaptured, plaintext into 15006).

const PORT = 8080;
const PORT2 = 8081;
const TD = "cluster.local";
const NAMESPACES: Record<string, string> = { n0p0: "alpha", n0p1: "beta", n1p0: "dest", n1p1: "beta" };

type Outcome = "allow" | "deny";

describePrivileged("ztunnel authorization, services and what an operator inspects", () => {
  let mesh: Mesh;
  let a0: PodInfo;
  let a1: PodInfo;
  let dst: PodInfo;
  let b1: PodInfo;
  let plain: PodInfo;
  /** Connections each app accepted, per "pod:port". */
  const accepted = new Map<string, number>();

  const principal = (pod: PodInfo): string => `${TD}/ns/${NAMESPACES[pod.name] ?? "default"}/sa/sa-${pod.name}`;
  const seen = (pod: PodInfo, port: number): number => accepted.get(`${pod.name}:${port}`) ?? 0;

  beforeAll(async () => {
    mesh = await Mesh.create({ uncaptured: 1, namespace: (p) => NAMESPACES[p.name] ?? "default" });
    a0 = mesh.topo.pod(0, 0);
    a1 = mesh.topo.pod(0, 1);
    dst = mesh.topo.pod(1, 0);
    b1 = mesh.topo.pod(1, 1);
    plain = mesh.uncaptured[0] as PodInfo;
    await nameEchoApps(mesh, [PORT, PORT2], (pod, port) => accepted.set(`${pod.name}:${port}`, seen(pod, port) + 1));
    await Promise.all([mesh.startZtunnel(0), mesh.startZtunnel(1)]);
  }, 60_000);

  afterAll(async () => {
    await mesh?.destroy();
  });

  /** One connection: "allow" when the app answered, "deny" when it was closed with no data. */
  async function attempt(from: PodInfo, to: string, port: number): Promise<{ outcome: Outcome; name: string }> {
    let s: Socket;
    try {
      s = await mesh.dial(from, to, port);
    } catch {
      return { outcome: "deny", name: "" };
    }
    const data = await upToFirstLine(s);
    return data.includes("\n") ? { outcome: "allow", name: data.split("\n")[0] ?? "" } : { outcome: "deny", name: "" };
  }

  describe("policy matrix (denied: 401 at the CONNECT, the app never sees it)", () => {
    interface Case {
      name: string;
      policies: () => unknown[];
      from: () => PodInfo;
      port?: number;
      expect: Outcome;
    }
    const nsPolicy = (name: string, action: "Allow" | "Deny", match: Record<string, unknown>, extra: Record<string, unknown> = {}): unknown => ({
      name,
      namespace: "dest",
      scope: "Namespace",
      action,
      rules: [[[match]]],
      ...extra,
    });
    const cases: Case[] = [
      { name: "no policies: allowed", policies: () => [], from: () => a0, expect: "allow" },
      { name: "allow by principal: the named client passes", policies: () => [nsPolicy("p", "Allow", { principals: [principal(a0)] })], from: () => a0, expect: "allow" },
      { name: "allow by principal: another client is denied", policies: () => [nsPolicy("p", "Allow", { principals: [principal(a0)] })], from: () => a1, expect: "deny" },
      { name: "deny by namespace: a client of that namespace is denied", policies: () => [nsPolicy("p", "Deny", { namespaces: ["beta"] })], from: () => a1, expect: "deny" },
      { name: "deny by namespace: same-node client of that namespace is denied", policies: () => [nsPolicy("p", "Deny", { namespaces: ["beta"] })], from: () => b1, expect: "deny" },
      { name: "deny by namespace: another namespace passes", policies: () => [nsPolicy("p", "Deny", { namespaces: ["beta"] })], from: () => a0, expect: "allow" },
      { name: "deny by port: that port is denied", policies: () => [nsPolicy("p", "Deny", { destinationPorts: [PORT2] })], from: () => a0, port: PORT2, expect: "deny" },
      { name: "deny by port: another port passes", policies: () => [nsPolicy("p", "Deny", { destinationPorts: [PORT2] })], from: () => a0, port: PORT, expect: "allow" },
      { name: "allow by port: an unlisted port is denied", policies: () => [nsPolicy("p", "Allow", { destinationPorts: [PORT] })], from: () => a0, port: PORT2, expect: "deny" },
      { name: "deny by source CIDR: the client's /32 is denied", policies: () => [nsPolicy("p", "Deny", { sourceIps: [`${a0.ip}/32`] })], from: () => a0, expect: "deny" },
      { name: "deny by source CIDR: another client passes", policies: () => [nsPolicy("p", "Deny", { sourceIps: [`${a0.ip}/32`] })], from: () => a1, expect: "allow" },
      { name: "deny by node-0 pod CIDR /24: denied", policies: () => [nsPolicy("p", "Deny", { sourceIps: [`${a0.ip.split(".").slice(0, 3).join(".")}.0/24`] })], from: () => a1, expect: "deny" },
      { name: "deny by destination IP: denied", policies: () => [nsPolicy("p", "Deny", { destinationIps: [dst.ip] })], from: () => a0, expect: "deny" },
      { name: "notSourceIps: everyone but the listed client is denied", policies: () => [nsPolicy("p", "Deny", { notSourceIps: [`${a0.ip}/32`] })], from: () => a1, expect: "deny" },
      { name: "notSourceIps: the listed client passes", policies: () => [nsPolicy("p", "Deny", { notSourceIps: [`${a0.ip}/32`] })], from: () => a0, expect: "allow" },
      { name: "notNamespaces deny: the excepted namespace passes", policies: () => [nsPolicy("p", "Deny", { notNamespaces: ["alpha"] })], from: () => a0, expect: "allow" },
      { name: "notNamespaces deny: other namespaces are denied", policies: () => [nsPolicy("p", "Deny", { notNamespaces: ["alpha"] })], from: () => a1, expect: "deny" },
      { name: "allow notPrincipals: the excluded principal is denied", policies: () => [nsPolicy("p", "Allow", { notPrincipals: [principal(a0)] })], from: () => a0, expect: "deny" },
      { name: "allow notPrincipals: others pass", policies: () => [nsPolicy("p", "Allow", { notPrincipals: [principal(a0)] })], from: () => a1, expect: "allow" },
      { name: "prefix match on namespace: allowed", policies: () => [nsPolicy("p", "Allow", { namespaces: ["alph*"] })], from: () => a0, expect: "allow" },
      { name: "prefix match on namespace: non-matching denied", policies: () => [nsPolicy("p", "Allow", { namespaces: ["alph*"] })], from: () => a1, expect: "deny" },
      {
        name: "global scope deny from another namespace applies to the destination",
        policies: () => [{ name: "g", namespace: "istio-system", scope: "Global", action: "Deny", rules: [[[{ principals: [principal(a1)] }]]] }],
        from: () => a1,
        expect: "deny",
      },
      {
        name: "namespace scope of another namespace does not apply",
        policies: () => [{ name: "o", namespace: "other", scope: "Namespace", action: "Deny", rules: [[[{ principals: [principal(a1)] }]]] }],
        from: () => a1,
        expect: "allow",
      },
      { name: "dry run deny-all only logs: allowed", policies: () => [nsPolicy("p", "Deny", { principals: ["*"] }, { dryRun: true })], from: () => a0, expect: "allow" },
      { name: "require mTLS: an mTLS client passes", policies: () => [nsPolicy("p", "Deny", { notPrincipals: ["*"] })], from: () => a0, expect: "allow" },
      { name: "require mTLS: a plaintext client (15006) is denied", policies: () => [nsPolicy("p", "Deny", { notPrincipals: ["*"] })], from: () => plain, expect: "deny" },
      { name: "no policies again: plaintext passes", policies: () => [], from: () => plain, expect: "allow" },
    ];

    let lastPolicies = "";
    for (const c of cases) {
      it(c.name, async () => {
        const policies = c.policies();
        if (JSON.stringify(policies) !== lastPolicies) {
          await mesh.setExtraState({ policies });
          lastPolicies = JSON.stringify(policies);
        }
        const port = c.port ?? PORT;
        const from = c.from();
        const before = seen(dst, port);
        const srcNode = from === plain ? 1 : from.node;
        const logMark = mesh.node(1).output.length;
        const r = await attempt(from, dst.ip, port);
        expect(r.outcome, mesh.logs(1, 10)).toBe(c.expect);
        if (c.expect === "allow") {
          expect(r.name).toBe(dst.name);
          expect(seen(dst, port)).toBe(before + 1);
          return;
        }
        // Denied: the app never saw it, the destination ztunnel logged the DENY.
        await waitFor(() => mesh.node(1).output.slice(logMark).join("").includes('"response_flags":"DENY"'), 3_000, () => `no DENY record:\n${mesh.logs(1, 10)}`);
        expect(seen(dst, port)).toBe(before);
        if (from !== plain) {
          // The source ztunnel's CONNECT was answered 401.
          await waitFor(
            () => mesh.accessLog(srcNode).some((l) => l.direction === "outbound" && String(l.error ?? "").includes("answered 401") && l["src.workload"] === from.name),
            3_000,
            () => `no 401 at the source:\n${mesh.logs(srcNode, 10)}`,
          );
        }
      });
    }

    it("an invalid policy set is rejected: old state kept, reason logged", async () => {
      await mesh.setExtraState({ policies: [nsPolicy("p", "Deny", { principals: [principal(a1)] })] });
      const before = (await mesh.configDump(1)).stateVersion;
      await mesh.setExtraState({ policies: [nsPolicy("bad", "Deny", { sourceIps: ["10.0.0.0/99"] })] }, { expectRejected: true });
      const dump = await mesh.configDump(1);
      expect(dump.stateVersion).toBe(before);
      expect(JSON.stringify(dump.policies)).toContain(principal(a1));
      expect(mesh.logs(1, 50)).toMatch(/reload failed; keeping the previous state/);
      expect((await attempt(a1, dst.ip, PORT)).outcome).toBe("deny");
      lastPolicies = "invalid";
    });
  });

  it("tightening a policy closes an already-open connection it now denies (dry run does not)", async () => {
    await mesh.setExtraState({ policies: [] });
    const c = await mesh.dial(a0, dst.ip, PORT);
    c.on("error", () => undefined);
    // Cut by ztunnel: a reset ('close') or, if the reset raced a FIN, the end of the stream.
    const closed = new Promise<void>((r) => {
      c.once("close", () => r());
      c.once("end", () => r());
    });
    const echo = async (msg: string): Promise<string> =>
      await new Promise((resolve) => {
        let got = "";
        const on = (d: Buffer): void => {
          got += d.toString();
          if (got.includes(msg)) {
            c.off("data", on);
            resolve(got);
          }
        };
        c.on("data", on);
        c.write(msg);
      });
    expect(await echo("hello-1")).toContain("hello-1");
    const deny = { name: "t", namespace: "dest", scope: "Namespace", action: "Deny", rules: [[[{ principals: [principal(a0)] }]]] };
    await mesh.setExtraState({ policies: [{ ...deny, dryRun: true }] });
    expect(await echo("hello-2")).toContain("hello-2");
    // Keep reading: a paused socket would never notice the reset.
    c.on("data", () => undefined);
    await mesh.setExtraState({ policies: [deny] });
    await Promise.race([closed, new Promise((_, rej) => setTimeout(() => rej(new Error(`connection still open 3 s after the policy denied it\n${mesh.logs(1, 30)}\n${mesh.logs(0, 10)}`)), 3_000))]);
    expect(mesh.logs(1, 200)).toMatch(/open connection denied by the new policies/);
    await mesh.setExtraState({ policies: [] });
  });

  it("a plaintext connection (15006) goes through the kernel relay, and a policy that now denies it cuts it within 1 s", async () => {
    // No policies here: the test before ends with none.
    const metrics = async (): Promise<string> => (await mesh.http(1, 15020, "/metrics")).body;
    const kernelRelays = (text: string): number => Number(/^ztunnel_plaintext_relays_total\{relay="kernel",reason=""\} (\d+)$/m.exec(text)?.[1] ?? 0);
    const before = kernelRelays(await metrics());
    // A finished one first: its access line says which relay copied its bytes.
    const done = await mesh.dial(plain, dst.ip, PORT);
    const got = readAll(done);
    done.end("over splice");
    expect((await got).toString()).toBe(`${dst.name}\nover splice`);
    await waitFor(
      () => mesh.accessLog(1).some((l) => l.direction === "inbound" && l["dst.workload"] === dst.name && l.bytes_sent === 11 && l.relay === "kernel"),
      3_000,
      () => `no inbound plaintext record with relay kernel:\n${mesh.logs(1, 10)}`,
    );
    // An open one, cut when the namespace starts requiring mTLS.
    const c = await mesh.dial(plain, dst.ip, PORT);
    c.on("error", () => undefined);
    const closed = new Promise<void>((r) => {
      c.once("close", () => r());
      c.once("end", () => r());
    });
    const first = new Promise<string>((r) => c.once("data", (d: Buffer) => r(d.toString())));
    c.write("x");
    expect(await first).toContain(dst.name);
    c.on("data", () => undefined);
    await waitFor(async () => kernelRelays(await metrics()) >= before + 2, 3_000, () => "the kernel relay count did not grow by 2");
    await mesh.setExtraState({ policies: [{ name: "mtls", namespace: "dest", scope: "Namespace", action: "Deny", rules: [[[{ notPrincipals: ["*"] }]]] }] });
    const t0 = Date.now();
    await Promise.race([closed, new Promise((_, rej) => setTimeout(() => rej(new Error(`plaintext connection still open 1 s after the policy denied it\n${mesh.logs(1, 30)}`)), 1_000))]);
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(mesh.logs(1, 200)).toMatch(/open connection denied by the new policies/);
    await mesh.setExtraState({ policies: [] });
  });

  it("a VIP with 3 endpoints spreads 300 connections across all 3; no endpoints → UH", async () => {
    const vip = "10.96.0.10";
    const empty = "10.96.0.11";
    const key = "dest/web.dest.svc.cluster.local";
    await mesh.setExtraState({
      services: [
        { name: "web", namespace: "dest", hostname: "web.dest.svc.cluster.local", vips: [vip], ports: { "80": PORT } },
        { name: "none", namespace: "dest", hostname: "none.dest.svc.cluster.local", vips: [empty], ports: { "80": PORT } },
      ],
      members: { [dst.name]: { [key]: { "80": PORT } }, [b1.name]: { [key]: { "80": PORT } }, [a1.name]: { [key]: { "80": PORT } } },
    });
    const counts = new Map<string, number>();
    for (let batch = 0; batch < 10; batch++) {
      const results = await Promise.all(Array.from({ length: 30 }, () => attempt(a0, vip, 80)));
      for (const r of results) {
        expect(r.outcome).toBe("allow");
        counts.set(r.name, (counts.get(r.name) ?? 0) + 1);
      }
    }
    expect([...counts.keys()].sort()).toEqual([a1.name, b1.name, dst.name].sort());
    for (const n of counts.values()) expect(n).toBeGreaterThan(50);
    // Service-addressed HBONE: the source record names the service.
    await waitFor(() => mesh.accessLog(0).some((l) => l["dst.service"] === "web.dest.svc.cluster.local" && l["dst.hbone_addr"] !== undefined), 3_000, () => "no service record");
    expect((await attempt(a0, empty, 80)).outcome).toBe("deny");
    await waitFor(() => mesh.accessLog(0).some((l) => l.response_flags === "UH" && l["dst.service"] === "none.dest.svc.cluster.local"), 3_000, () => `no UH record:\n${mesh.logs(0, 10)}`);
  });

  it("metrics report exact payload bytes (both reporters, all workers, within 1 s of close), access logs carry identities and bytes", async () => {
    const series = (text: string, name: string, labels: Record<string, string>): number => {
      let sum = 0;
      for (const line of text.split("\n")) {
        if (!line.startsWith(`${name}{`)) continue;
        if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
        sum += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
      return sum;
    };
    const scrape = async (node: number): Promise<string> => (await mesh.http(node, 15020, "/metrics")).body;
    const src = { source_workload: a1.name, destination_workload: dst.name };
    const before = [await scrape(0), await scrape(1)];
    const N = 8;
    const up = 100_000;
    // The app writes its name line (n1p0\n) and echoes what it gets.
    const down = up + `${dst.name}\n`.length;
    for (let i = 0; i < N; i++) {
      const c = await mesh.dial(a1, dst.ip, PORT);
      const got = readAll(c);
      c.end(Buffer.alloc(up, i));
      expect((await got).length).toBe(down);
    }
    const closedAt = Date.now();
    let after: string[] = [];
    await waitFor(
      async () => {
        after = [await scrape(0), await scrape(1)];
        return series(after[1] ?? "", "istio_tcp_connections_closed_total", { ...src, reporter: "destination" }) - series(before[1] ?? "", "istio_tcp_connections_closed_total", { ...src, reporter: "destination" }) === N &&
          series(after[0] ?? "", "istio_tcp_connections_closed_total", { ...src, reporter: "source" }) - series(before[0] ?? "", "istio_tcp_connections_closed_total", { ...src, reporter: "source" }) === N;
      },
      3_000,
      () => "closed counters did not reach N",
    );
    expect(Date.now() - closedAt).toBeLessThan(1_500);
    for (const [node, reporter] of [[0, "source"], [1, "destination"]] as const) {
      const l = { ...src, reporter };
      const delta = (name: string): number => series(after[node] ?? "", name, l) - series(before[node] ?? "", name, l);
      expect(delta("istio_tcp_received_bytes_total"), `${reporter} received`).toBe(N * up);
      expect(delta("istio_tcp_sent_bytes_total"), `${reporter} sent`).toBe(N * down);
      expect(delta("istio_tcp_connections_opened_total")).toBe(N);
    }
    // An open connection is counted as opened by both reporters before it closes (next flush).
    const openedNow = async (node: number, reporter: string): Promise<number> =>
      series(await scrape(node), "istio_tcp_connections_opened_total", { ...src, reporter });
    const o0 = await openedNow(0, "source");
    const o1 = await openedNow(1, "destination");
    const live = await mesh.dial(a1, dst.ip, PORT);
    live.on("error", () => undefined);
    await waitFor(async () => (await openedNow(0, "source")) === o0 + 1 && (await openedNow(1, "destination")) === o1 + 1, 2_500, () => "open connection not counted");
    live.destroy();
    const dest = after[1] ?? "";
    expect(series(dest, "istio_tcp_connections_closed_total", { ...src, reporter: "destination", connection_security_policy: "mutual_tls", source_principal: `spiffe://${principal(a1)}`, destination_workload_namespace: "dest", source_workload_namespace: "beta", source_cluster: "Kubernetes", destination_cluster: "Kubernetes" })).toBeGreaterThanOrEqual(N);
    expect(dest).toMatch(/^workload_manager_active_proxy_count 2$/m);
    expect(dest).toMatch(/^process_cpu_user_seconds_total /m);
    // Both workers of the destination carried some of them (aggregated in one series).
    const inbound = mesh.accessLog(1).filter((l) => l.direction === "inbound" && l["src.workload"] === a1.name && l.bytes_sent === up);
    expect(inbound.length).toBeGreaterThanOrEqual(N);
    const rec = inbound[inbound.length - 1] ?? {};
    expect(rec["src.identity"]).toBe(`spiffe://${principal(a1)}`);
    expect(rec["dst.identity"]).toBe(`spiffe://${principal(dst)}`);
    expect(rec.bytes_recv).toBe(down);
    expect(rec.level).toBe("info");
    const out = mesh.accessLog(0).filter((l) => l.direction === "outbound" && l["src.workload"] === a1.name && l.bytes_sent === up);
    expect(out.length).toBeGreaterThanOrEqual(N);
    expect(out[0]?.["dst.identity"]).toBe(`spiffe://${principal(dst)}`);
    expect(out[0]?.bytes_recv).toBe(down);
  });

  it("config_dump: certificates, each enrolled pod's listeners on every worker, open connections; gone after removal", async () => {
    const extra = await mesh.addCapturedPod(1, "n1x");
    // The state file gained the pod; ZDS may enroll it once every ztunnel knows it.
    await waitFor(async () => (await mesh.configDump(1)).workloads.some((w) => w.uid === mesh.uid(extra)), 5_000, () => "new pod not in the state");
    await mesh.enroll(extra);
    const c = await mesh.dial(a0, dst.ip, PORT);
    c.on("error", () => undefined);
    await new Promise((r) => c.once("data", r));
    const dump = await mesh.configDump(1);
    for (const pod of [dst, b1, extra]) {
      const ws = dump.workloadState[mesh.uid(pod)];
      expect(ws?.state).toBe("Up");
      for (const port of [15001, 15006, 15008]) {
        expect(ws?.listeners.filter((l) => l.port === port).map((l) => l.worker).sort()).toEqual([0, 1]);
      }
      expect(ws?.listeners.every((l) => l.mark === 1337)).toBe(true);
    }
    const conns = dump.workloadState[mesh.uid(dst)]?.connections ?? [];
    expect(conns.some((x) => x.listener === "inbound-hbone" && x.srcIdentity === `spiffe://${principal(a0)}`)).toBe(true);
    const cert = dump.certificates.find((x) => x.identity === `spiffe://${principal(dst)}`);
    expect(cert?.serial).toMatch(/^[0-9A-F]+$/);
    expect(cert?.expiring).toBe(false);
    expect(Date.parse(cert?.notAfter ?? "")).toBeGreaterThan(Date.now());
    c.destroy();
    await mesh.unenroll(extra);
    const after = await mesh.configDump(1);
    expect(after.workloadState[mesh.uid(extra)]).toBeUndefined();
  });

  it("/listeners?pod= shows ztunnel's listeners and the kernel's sockets (ss in the pod netns)", async () => {
    const c = await mesh.dial(a0, dst.ip, PORT);
    c.on("error", () => undefined);
    await new Promise((r) => c.once("data", r));
    const r = await mesh.http(1, 15000, `/listeners?pod=dest/${dst.name}`);
    expect(r.status, r.body).toBe(200);
    const view = JSON.parse(r.body) as {
      ztunnel: { listeners: Array<{ port: number; worker: number }> };
      kernel: { sockets: Array<{ state: string; local: { port?: number }; mark?: number; rttMs?: number; recvQ: number }> };
    };
    expect(view.ztunnel.listeners.filter((l) => l.port !== 15053)).toHaveLength(6);
    const listening = view.kernel.sockets.filter((s) => s.state === "LISTEN" && s.local.port === 15008);
    expect(listening).toHaveLength(2);
    expect(listening.every((s) => s.mark === 1337)).toBe(true);
    const hbone = view.kernel.sockets.filter((s) => s.state === "ESTAB" && s.local.port === 15008);
    expect(hbone.length).toBeGreaterThan(0);
    expect(hbone.every((s) => typeof s.rttMs === "number")).toBe(true);
    c.destroy();
    expect((await mesh.http(1, 15000, "/listeners?pod=dest/nope")).status).toBe(404);
  });

  it("POST /logging?level= changes the level on main and workers", async () => {
    expect((await mesh.http(1, 15000, "/logging?level=warn", "POST")).status).toBe(200);
    const mark = mesh.accessLog(1).length;
    const r = await attempt(a0, dst.ip, PORT);
    expect(r.outcome).toBe("allow");
    await new Promise((res) => setTimeout(res, 500));
    // Successful connections log at info: nothing new at warn.
    expect(mesh.accessLog(1).slice(mark).filter((l) => l.level === "info")).toEqual([]);
    expect((await mesh.http(1, 15000, "/logging?level=nope", "POST")).status).toBe(400);
    expect((await mesh.http(1, 15000, "/logging?level=info", "POST")).status).toBe(200);
    expect((await mesh.http(1, 15000, "/logging")).body).toMatch(/current log level is info/);
  });

  it("readiness is 500 naming the pending ZDS snapshot until the snapshot arrives, then 200", async () => {
    const child = mesh.node(0).ztunnel;
    if (child !== undefined) await killAndWait(child, "SIGTERM");
    const sock = join(mesh.dir, "late", "ztunnel.sock");
    await mesh.startZtunnel(0, { INPOD_UDS: sock }, false);
    let r = { status: 0, body: "" };
    await waitFor(async () => (r = await mesh.readiness(0)).status !== 0, 10_000, () => "readiness never answered");
    expect(r.status).toBe(500);
    expect(r.body).toMatch(/workload proxy manager/);
    const server = createZdsServer({ list: () => [...mesh.node(0).enrolled.values()] }, { socketPath: sock });
    try {
      await mesh.waitReady(0, 15_000);
      expect((await mesh.readiness(0)).body).toBe("ready\n");
    } finally {
      const z = mesh.node(0).ztunnel;
      if (z !== undefined) await killAndWait(z, "SIGTERM");
      server.close();
    }
  });
});
