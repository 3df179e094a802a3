import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { Metadata, Server, ServerCredentials, status, type ServerDuplexStream, type ServerUnaryCall, type sendUnaryData, type UntypedServiceImplementation, type ServiceDefinition } from "@grpc/grpc-js";
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, ADS_METHOD, CA_METHOD, decodeAs, encodeAs, xdsTypes } from "../../../src/ztunnel/xds/proto.js";
import { structStrings } from "../../../src/ztunnel/xds/struct.js";
import { createPki, parseCsr, type FakePki } from "./pki.js";

// A fake istiod of ours (test harness): delta ADS with nonces, ACK/NACK bookkeeping and pushes,
// and IstioCertificateService with the checks istiod makes (bearer token, cluster id, a node
// proxy may impersonate only identities of workloads on its node). Served over TLS with a
// certificate for istiod.istio-system.svc, on loopback ports or on sockets made in test netns.

export interface FakeIstiodOptions {
  /** Accepted bearer tokens → the node the caller (a ztunnel) runs on. */
  readonly tokens: Readonly<Record<string, string>>;
  readonly clusterId?: string;
  readonly trustDomain?: string;
}

export interface RecordedRequest {
  readonly stream: number;
  readonly typeUrl: string;
  readonly nonce: string;
  readonly errorDetail: { code: number; message: string } | undefined;
  readonly initialVersions: Record<string, string>;
  readonly subscribe: string[];
  readonly nodeId: string | undefined;
  /** String fields of the node metadata Struct (first request of a stream). */
  readonly nodeMeta: Record<string, string>;
  /** The stream's call metadata (headers), first value of each. */
  readonly headers: Record<string, string>;
}

export interface CaRequestRecord {
  readonly identity: string;
  readonly node: string | undefined;
  readonly ok: boolean;
  readonly reason: string;
  readonly ttlSeconds: number;
}

interface Held {
  version: string;
  bytes: Buffer;
  /** The workload's node and identity (Address workloads only), for impersonation checks. */
  workload?: { node: string; identity: string };
}

interface Session {
  readonly id: number;
  readonly call: ServerDuplexStream<Buffer, Buffer>;
  /** type → name → version the client holds (what we sent, or what it said it had). */
  readonly known: Map<string, Map<string, string>>;
}

const TYPES = [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL] as const;

export class FakeIstiod {
  readonly requests: RecordedRequest[] = [];
  readonly caRequests: CaRequestRecord[] = [];
  /** When set, CreateCertificate answers UNAVAILABLE. */
  caDown = false;
  private readonly resources = new Map<string, Map<string, Held>>(TYPES.map((t) => [t, new Map()]));
  private readonly sessions = new Set<Session>();
  private server: Server | undefined;
  private injector: ReturnType<Server["createConnectionInjector"]> | undefined;
  private readonly netServers: NetServer[] = [];
  private readonly sockets = new Set<Socket>();
  private nextSession = 1;
  private nextNonce = 1;
  private nextVersion = 1;
  private down = false;
  private readonly boundPorts: number[] = [];
  /**
   * Pods the API server has scheduled but istiod publishes no workload for yet (no IP): its CA
   * authorizes a node by pods (with their service accounts) on it, not by xDS workloads.
   */
  private readonly scheduledPods = new Map<string, { node: string; identity: string }>();

  private constructor(
    readonly pki: FakePki,
    private readonly opts: FakeIstiodOptions,
  ) {}

  static async start(opts: FakeIstiodOptions): Promise<FakeIstiod> {
    const f = new FakeIstiod(await createPki(opts.trustDomain ?? "cluster.local"), opts);
    f.boot();
    return f;
  }

  get rootPem(): string {
    return this.pki.rootPem;
  }

  get streams(): number {
    return this.sessions.size;
  }

  /** Serves on a listening socket fd (e.g. one made inside a test netns). */
  async addListener(spec: { fd: number } | { host: string; port?: number }): Promise<number> {
    const srv = createNetServer((sock) => {
      if (this.down || this.injector === undefined) {
        sock.destroy();
        return;
      }
      this.sockets.add(sock);
      sock.on("close", () => this.sockets.delete(sock));
      this.injector.injectConnection(sock);
    });
    await new Promise<void>((resolve, reject) => {
      srv.once("error", reject);
      if ("fd" in spec) srv.listen({ fd: spec.fd }, () => resolve());
      else srv.listen(spec.port ?? 0, spec.host, () => resolve());
    });
    this.netServers.push(srv);
    const a = srv.address();
    const port = typeof a === "object" && a !== null ? a.port : 0;
    this.boundPorts.push(port);
    return port;
  }

  /** Sets (adds or replaces) a resource; `push()` sends it. Address versions grow; policies have none. */
  setAddress(name: string, address: Record<string, unknown>): void {
    const bytes = encodeAs(xdsTypes().address, address);
    const w = address.workload as { node?: string; trust_domain?: string; namespace?: string; service_account?: string } | undefined;
    const held: Held = { version: String(this.nextVersion++), bytes };
    if (w !== undefined) held.workload = { node: w.node ?? "", identity: `spiffe://${w.trust_domain || "cluster.local"}/ns/${w.namespace ?? ""}/sa/${w.service_account || "default"}` };
    this.map(ADDRESS_TYPE_URL).set(name, held);
  }

  /** A pod the API has on `node` before it has an IP (no Address yet): the CA may sign for it. */
  setScheduledPod(name: string, pod: { node: string; identity: string }): void {
    this.scheduledPods.set(name, pod);
  }

  setAuthorization(name: string, policy: Record<string, unknown>): void {
    this.map(AUTHORIZATION_TYPE_URL).set(name, { version: "", bytes: encodeAs(xdsTypes().authorization, policy) });
  }

  /** A resource whose payload is arbitrary bytes (malformed on purpose). */
  setRaw(typeUrl: string, name: string, bytes: Buffer): void {
    this.map(typeUrl).set(name, { version: String(this.nextVersion++), bytes });
  }

  remove(typeUrl: string, name: string): void {
    this.map(typeUrl).delete(name);
  }

  /** Sends every session what changed since it last heard (resources and removals). */
  push(): void {
    for (const s of this.sessions) for (const t of TYPES) if (s.known.has(t)) this.sendDiff(s, t, false);
  }

  /** Writes raw bytes as a response message on every open stream (malformed on purpose). */
  sendRaw(bytes: Buffer): void {
    for (const s of this.sessions) s.call.write(bytes);
  }

  /** NACKs (requests with error_detail) seen so far. */
  nacks(): RecordedRequest[] {
    return this.requests.filter((r) => r.errorDetail !== undefined);
  }

  /** Drops every stream and connection, refuses new ones for `downMs`, then serves again (state kept). */
  async restart(downMs: number): Promise<void> {
    this.down = true;
    this.server?.forceShutdown();
    for (const s of this.sockets) s.destroy();
    this.sessions.clear();
    await new Promise((r) => setTimeout(r, downMs));
    this.boot();
    this.down = false;
  }

  async stop(): Promise<void> {
    this.down = true;
    this.server?.forceShutdown();
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.netServers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  private boot(): void {
    const server = new Server();
    server.addService(service(), {
      DeltaAggregatedResources: (call: ServerDuplexStream<Buffer, Buffer>) => this.onStream(call),
      CreateCertificate: (call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => void this.onCsr(call, cb),
    } as UntypedServiceImplementation);
    const creds = ServerCredentials.createSsl(null, [{ private_key: Buffer.from(this.pki.servingKeyPem), cert_chain: Buffer.from(this.pki.servingCertPem) }], false);
    this.injector = server.createConnectionInjector(creds);
    this.server = server;
  }

  private map(typeUrl: string): Map<string, Held> {
    let m = this.resources.get(typeUrl);
    if (m === undefined) {
      m = new Map();
      this.resources.set(typeUrl, m);
    }
    return m;
  }

  private authCheck(md: Metadata): { node: string } | { error: string; code: status } {
    const auth = String(md.get("authorization")[0] ?? "");
    const token = auth.startsWith("Bearer ") ? auth.slice(7) : "";
    const node = this.opts.tokens[token];
    if (node === undefined) return { error: "authentication failure: token not accepted", code: status.UNAUTHENTICATED };
    const cluster = String(md.get("clusterid")[0] ?? "");
    if (cluster !== (this.opts.clusterId ?? "Kubernetes")) return { error: `cluster id ${cluster} is not ours`, code: status.PERMISSION_DENIED };
    return { node };
  }

  private onStream(call: ServerDuplexStream<Buffer, Buffer>): void {
    const auth = this.authCheck(call.metadata);
    if ("error" in auth) {
      call.emit("error", { code: auth.code, details: auth.error });
      return;
    }
    const session: Session = { id: this.nextSession++, call, known: new Map() };
    this.sessions.add(session);
    call.on("data", (b: Buffer) => {
      const m = decodeAs(xdsTypes().deltaRequest, b);
      const typeUrl = String(m.type_url ?? "");
      const ed = m.error_detail as { code?: number; message?: string } | undefined;
      const rec: RecordedRequest = {
        stream: session.id,
        typeUrl,
        nonce: String(m.response_nonce ?? ""),
        errorDetail: ed === undefined ? undefined : { code: ed.code ?? 0, message: ed.message ?? "" },
        initialVersions: (m.initial_resource_versions as Record<string, string> | undefined) ?? {},
        subscribe: (m.resource_names_subscribe as string[] | undefined) ?? [],
        nodeId: (m.node as { id?: string } | undefined)?.id,
        nodeMeta: structStrings((m.node as { metadata?: unknown } | undefined)?.metadata),
        headers: Object.fromEntries(Object.entries(call.metadata.getMap()).map(([k, v]) => [k, String(v)])),
      };
      this.requests.push(rec);
      if (rec.nonce === "" && !session.known.has(typeUrl)) {
        // A new (wildcard) subscription: the client holds initial versions; send the rest.
        session.known.set(typeUrl, new Map(Object.entries(rec.initialVersions)));
        this.sendDiff(session, typeUrl, true);
      }
    });
    const end = (): void => {
      this.sessions.delete(session);
    };
    call.on("end", () => {
      end();
      call.end();
    });
    call.on("error", end);
    call.on("cancelled", end);
  }

  private sendDiff(s: Session, typeUrl: string, always: boolean): void {
    const known = s.known.get(typeUrl) ?? new Map<string, string>();
    const current = this.map(typeUrl);
    const resources: Array<Record<string, unknown>> = [];
    const removed: string[] = [];
    for (const [name, h] of current) {
      // Authorization has no version: a resource is "known" only if it was sent with these bytes.
      const tag = h.version !== "" ? h.version : `b:${h.bytes.toString("base64")}`;
      if (known.get(name) === tag || (h.version === "" && known.get(name) === "" && false)) continue;
      resources.push({ name, version: h.version, resource: { type_url: typeUrl, value: h.bytes } });
      known.set(name, tag);
    }
    for (const name of [...known.keys()]) {
      if (!current.has(name)) {
        removed.push(name);
        known.delete(name);
      }
    }
    s.known.set(typeUrl, known);
    if (!always && resources.length === 0 && removed.length === 0) return;
    const nonce = String(this.nextNonce++);
    s.call.write(encodeAs(xdsTypes().deltaResponse, { type_url: typeUrl, nonce, resources, removed_resources: removed, system_version_info: "fake" }));
  }

  private async onCsr(call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>): Promise<void> {
    const fail = (code: status, details: string, identity = "", node?: string, ttl = 0): void => {
      this.caRequests.push({ identity, node, ok: false, reason: details, ttlSeconds: ttl });
      cb({ code, details });
    };
    if (this.caDown) return fail(status.UNAVAILABLE, "CA is down (test)");
    const auth = this.authCheck(call.metadata);
    if ("error" in auth) return fail(auth.code, auth.error);
    const req = decodeAs(xdsTypes().caRequest, call.request);
    const identity = structStrings(req.metadata).ImpersonatedIdentity ?? "";
    const ttl = Number(req.validity_duration ?? 0);
    const pods = [...[...this.map(ADDRESS_TYPE_URL).values()].flatMap((h) => (h.workload === undefined ? [] : [h.workload])), ...this.scheduledPods.values()];
    const onNode = pods.some((w) => w.identity === identity && w.node === auth.node);
    if (!onNode) return fail(status.PERMISSION_DENIED, `node ${auth.node} may not impersonate ${identity}`, identity, auth.node, ttl);
    let csr: Awaited<ReturnType<typeof parseCsr>>;
    try {
      csr = await parseCsr(String(req.csr ?? ""));
    } catch (err) {
      return fail(status.INVALID_ARGUMENT, `bad CSR: ${(err as Error).message}`, identity, auth.node, ttl);
    }
    if (csr.uris.length !== 1 || csr.uris[0] !== identity) return fail(status.INVALID_ARGUMENT, `CSR SAN ${csr.uris.join(",")} is not ${identity}`, identity, auth.node, ttl);
    if (csr.subject !== "") return fail(status.INVALID_ARGUMENT, `CSR has a subject (${csr.subject})`, identity, auth.node, ttl);
    const leaf = this.pki.signLeaf(csr.spki, identity, (ttl > 0 ? ttl : 86_400) * 1000);
    this.caRequests.push({ identity, node: auth.node, ok: true, reason: "", ttlSeconds: ttl });
    cb(null, encodeAs(xdsTypes().caResponse, { cert_chain: [leaf, this.pki.intermediatePem, this.pki.rootPem] }));
  }
}

function service(): ServiceDefinition {
  const id = (b: Buffer): Buffer => b;
  return {
    DeltaAggregatedResources: { path: ADS_METHOD, requestStream: true, responseStream: true, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id },
    CreateCertificate: { path: CA_METHOD, requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id },
  } as ServiceDefinition;
}
