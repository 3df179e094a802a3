import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { randomBytes } from "node:crypto";
import type { ResourceName } from "./resources.js";
import { ObjectStore } from "./store.js";
import { ApiError, errors, reasonForCode } from "./status.js";
import { parseRoute, type ResourceRoute, type Route } from "./router.js";
import { WatchSession, type WireEvent } from "./watch.js";
import { RequestLog, type RequestPredicate, type RequestRecord, type RbacVerb } from "./requests.js";
import { discoveryBody } from "./discovery.js";
import { servePortForward, type PortForwardDial } from "./portforward.js";
import { createFromBody, deleteCollection, deleteFromRequest, listBody, patchFromBody, updateFromBody, watchFilter } from "./rest.js";

// A Kubernetes API server in one process, over plain HTTP on 127.0.0.1, for tests that run
// @kubernetes/client-node (and so our agent and ztunnel) against something that behaves like the
// real one: lists, watches with resourceVersion/bookmarks/410, patches, conflicts, Status errors.

export interface FakeKubeOptions {
  /** Bearer token every request must carry; default a random one; `false` disables auth. */
  token?: string | false;
  /** Watch history length (events); older resume points get 410 Expired. */
  maxHistory?: number;
  /** Period of BOOKMARK events on watches that asked for them (allowWatchBookmarks). */
  bookmarkIntervalMs?: number;
  /** Ends every watch after this long unless the client asked for less (timeoutSeconds). */
  maxWatchSeconds?: number;
  /**
   * A client's DELETE of a scheduled, running pod only sets deletionTimestamp (+grace), as on a
   * cluster; the test, playing kubelet, finishes it with store.delete(). Default: immediate.
   */
  gracefulPodDeletion?: boolean;
  /** Where to listen; default 127.0.0.1 on a kernel-chosen port. */
  listen?: ListenSpec;
  /** pods/portforward: how the "kubelet" reaches a pod's port (a test dials into the pod's netns). */
  portForward?: PortForwardDial;
}

export type ListenSpec = { host: string; port?: number } | { fd: number };

export type FailPath = string | RegExp | RequestPredicate;

interface FailRule {
  method: string;
  path: FailPath;
  status: number;
  remaining: number;
  message: string | undefined;
}

interface HeldWatch {
  res: ServerResponse;
  start: () => void;
}

const BODY_LIMIT = 3 * 1024 * 1024;

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= BODY_LIMIT) chunks.push(c);
    });
    req.on("end", () => (size > BODY_LIMIT ? reject(errors.badRequest("request body too large")) : resolve(Buffer.concat(chunks))));
    req.on("error", reject);
  });
}

function mediaType(header: string | undefined): string {
  return (header ?? "").split(";")[0]!.trim().toLowerCase();
}

function isTrue(v: string | undefined): boolean {
  return v === "true" || v === "1";
}

function parseRv(v: string | undefined): number | undefined {
  if (v === undefined || v === "" || v === "0") return undefined;
  if (!/^\d+$/.test(v)) throw errors.badRequest(`invalid resource version: ${JSON.stringify(v)}`);
  return Number(v);
}

export class FakeKubeServer {
  readonly store: ObjectStore;
  /** The bearer token clients must send, or undefined when auth is off. */
  readonly token: string | undefined;
  #servers: Server[] = [];
  #primaryUrl = "";
  #log = new RequestLog();
  #watches = new Set<WatchSession>();
  #held: HeldWatch[] = [];
  #holding = false;
  #failRules: FailRule[] = [];
  #opts: FakeKubeOptions;
  #unsubscribe: () => void;
  #sockets = new Set<Socket>();

  private constructor(opts: FakeKubeOptions) {
    this.#opts = opts;
    this.token = opts.token === false ? undefined : (opts.token ?? randomBytes(16).toString("hex"));
    this.store = new ObjectStore(opts.maxHistory === undefined ? {} : { maxHistory: opts.maxHistory });
    this.#unsubscribe = this.store.subscribe((ev) => {
      for (const w of [...this.#watches]) w.deliver(ev);
    });
  }

  /**
   * Starts the server; by default on 127.0.0.1 with a port chosen by the kernel. `listen.fd`
   * takes a listening TCP socket made elsewhere, e.g. inside a node's netns with the native
   * addon, so processes in that netns can reach the fake.
   */
  static async start(opts: FakeKubeOptions = {}): Promise<FakeKubeServer> {
    const s = new FakeKubeServer(opts);
    s.#primaryUrl = await s.addListener(opts.listen ?? { host: "127.0.0.1" });
    return s;
  }

  /**
   * Serves the same cluster on one more listener (another address, or a socket fd from another
   * netns: one per test node) and returns its URL, for kubeConfigFor({ url, token }).
   */
  async addListener(spec: ListenSpec): Promise<string> {
    const srv = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
      });
    });
    srv.on("upgrade", (req: IncomingMessage, socket: Socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
      void this.#upgrade(req, socket);
    });
    srv.on("connection", (sock: Socket) => {
      this.#sockets.add(sock);
      sock.on("close", () => this.#sockets.delete(sock));
    });
    await new Promise<void>((resolve, reject) => {
      srv.once("error", reject);
      if ("fd" in spec) srv.listen({ fd: spec.fd }, () => resolve());
      else srv.listen(spec.port ?? 0, spec.host, () => resolve());
    });
    this.#servers.push(srv);
    const a = srv.address() as AddressInfo;
    const host = a.family === "IPv6" ? `[${a.address}]` : a.address;
    return `http://${host}:${a.port}`;
  }

  /** URL of the first listener, e.g. `http://127.0.0.1:<port>`. */
  get url(): string {
    return this.#primaryUrl;
  }

  /** Every request so far (oldest first), as RBAC would describe it. */
  get requests(): readonly RequestRecord[] {
    return this.#log.records;
  }

  clearRequests(): void {
    this.#log.clear();
  }

  /** Sequence number the next request will get: `waitForRequest(p, { since: server.nextSeq })`. */
  get nextSeq(): number {
    return this.#log.nextSeq;
  }

  /** Resolves with the first request matching `pred`, seen on arrival and when answered (earlier ones count). */
  waitForRequest(pred: RequestPredicate, opts: { timeoutMs?: number; since?: number } = {}): Promise<RequestRecord> {
    return this.#log.waitFor(pred, opts);
  }

  /**
   * The next `times` (default 1) requests with this method ("*" for any) and path answer
   * `status` with a Status body instead of being served. `path` is an exact URL path, a RegExp
   * tested against the path, or a predicate on the request record.
   */
  failNext(method: string, path: FailPath, status: number, opts: { times?: number; message?: string } = {}): void {
    this.#failRules.push({ method: method.toUpperCase(), path, status, remaining: opts.times ?? 1, message: opts.message });
  }

  /**
   * Closes every open watch (or those of one resource) mid-stream. "end" finishes the chunked
   * response as a server-side timeout does (client-node re-watches from its last
   * resourceVersion); "reset" destroys the TCP connection (client-node reports an error).
   * Returns how many were closed.
   */
  dropWatches(opts: { mode?: "end" | "reset"; resource?: ResourceName } = {}): number {
    let n = 0;
    for (const w of [...this.#watches]) {
      if (opts.resource !== undefined && w.r.plural !== opts.resource) continue;
      if (opts.mode === "reset") w.destroy();
      else w.end();
      n++;
    }
    return n;
  }

  /** Compacts the history: the next watch resuming from an earlier resourceVersion gets 410. */
  compactHistory(): void {
    this.store.compact();
  }

  /** A BOOKMARK with the current resourceVersion on every watch that allows bookmarks. */
  sendBookmarks(): void {
    for (const w of this.#watches) w.bookmark(this.store.resourceVersion);
  }

  /** New watch requests wait (no response head) until releaseWatches(): a watch outage. */
  holdWatches(): void {
    this.#holding = true;
  }

  releaseWatches(): void {
    this.#holding = false;
    const held = this.#held;
    this.#held = [];
    for (const h of held) if (!h.res.destroyed && h.res.socket !== null && !h.res.socket.destroyed) h.start();
  }

  /** Open watch streams (of one resource, if given). */
  activeWatches(resource?: ResourceName): number {
    let n = 0;
    for (const w of this.#watches) if (resource === undefined || w.r.plural === resource) n++;
    return n;
  }

  /** Open TCP connections from clients: a test can prove its clients leaked none. */
  get openConnections(): number {
    return this.#sockets.size;
  }

  /** Waits until at least `count` watches (of `resource`, if given) are open. */
  async waitForWatches(count: number, opts: { resource?: ResourceName; timeoutMs?: number } = {}): Promise<void> {
    const deadline = Date.now() + (opts.timeoutMs ?? 5000);
    while (this.activeWatches(opts.resource) < count) {
      if (Date.now() > deadline) {
        throw new Error(`fake-kube: ${this.activeWatches(opts.resource)} of ${count} watches open after ${opts.timeoutMs ?? 5000} ms`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async stop(): Promise<void> {
    this.#unsubscribe();
    for (const w of [...this.#watches]) w.destroy();
    for (const h of this.#held) h.res.destroy();
    this.#held = [];
    // Upgraded (port-forward) sockets are no longer the HTTP server's to close.
    for (const s of this.#sockets) s.destroy();
    await Promise.all(
      this.#servers.map(
        (srv) =>
          new Promise<void>((resolve) => {
            srv.closeAllConnections();
            srv.close(() => resolve());
          }),
      ),
    );
  }

  // ---- request handling ----

  /** WebSocket upgrades: only pods/portforward (RBAC: create on pods/portforward, as since 1.32). */
  async #upgrade(req: IncomingMessage, socket: Socket): Promise<void> {
    const url = new URL(req.url ?? "/", "http://fake-kube");
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/portforward$/.exec(url.pathname);
    this.#log.add({ method: (req.method ?? "GET").toUpperCase(), path: url.pathname, query: Object.fromEntries(url.searchParams), verb: "create", apiGroup: "", resource: "pods", subresource: "portforward", ...(m ? { namespace: m[1]!, name: m[2]! } : {}) });
    if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) {
      socket.end("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    if (!m) {
      socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    const [ns, name] = [decodeURIComponent(m[1]!), decodeURIComponent(m[2]!)];
    await servePortForward(req, socket, ns, name, this.store.get("pods", name, ns) !== undefined, this.#opts.portForward);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://fake-kube");
    const method = (req.method ?? "GET").toUpperCase();
    const query = Object.fromEntries(url.searchParams);
    const route = parseRoute(url.pathname);
    const rec = this.#log.add(this.#describe(method, url.pathname, query, route));
    try {
      const raw = await readBody(req);
      const contentType = mediaType(req.headers["content-type"]);
      let body: unknown;
      if (raw.length > 0) {
        rec.contentType = contentType;
        try {
          body = JSON.parse(raw.toString("utf8"));
        } catch {
          throw errors.badRequest(`the request body is not valid JSON (content type ${contentType || "none"})`);
        } finally {
          rec.body = body;
        }
      }
      if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) throw errors.unauthorized();
      this.#injectedFailure(rec);
      if (route === undefined) throw errors.noSuchPath();
      if (route.type === "discovery") {
        const d = discoveryBody(route);
        if (d === undefined) throw errors.noSuchPath();
        this.#reply(res, rec, 200, d);
        return;
      }
      this.#serveResource(res, rec, route, method, query, contentType, body);
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(500, "InternalError", `fake-kube: ${String(err)}`);
      this.#reply(res, rec, e.httpStatus, e.toStatus());
    }
  }

  #describe(method: string, path: string, query: Record<string, string>, route: Route | undefined): Omit<RequestRecord, "seq"> {
    const rec: Omit<RequestRecord, "seq"> = { method, path, query, verb: method.toLowerCase() };
    if (route === undefined || route.type === "discovery") {
      rec.nonResourceURL = path;
      return rec;
    }
    const named = route.name !== undefined;
    const verbs: Record<string, RbacVerb> = { POST: "create", PUT: "update", PATCH: "patch" };
    if (method === "GET") rec.verb = route.legacyWatch || isTrue(query["watch"]) ? "watch" : named ? "get" : "list";
    else if (method === "DELETE") rec.verb = named ? "delete" : "deletecollection";
    else rec.verb = verbs[method] ?? rec.verb;
    rec.apiGroup = route.r.group;
    rec.resource = route.r.plural;
    if (route.subresource !== undefined) rec.subresource = route.subresource;
    if (route.name !== undefined) rec.name = route.name;
    // As the API server's RequestInfo: a request on a namespace object is "in" that namespace.
    const ns = route.r.plural === "namespaces" ? route.name : route.namespace;
    if (ns !== undefined) rec.namespace = ns;
    return rec;
  }

  #injectedFailure(rec: RequestRecord): void {
    const i = this.#failRules.findIndex((f) => {
      if (f.method !== "*" && f.method !== rec.method) return false;
      if (typeof f.path === "string") return f.path === rec.path;
      if (f.path instanceof RegExp) return f.path.test(rec.path);
      return f.path(rec);
    });
    if (i < 0) return;
    const rule = this.#failRules[i]!;
    if (--rule.remaining <= 0) this.#failRules.splice(i, 1);
    const reason = reasonForCode(rule.status);
    throw new ApiError(rule.status, reason, rule.message ?? `injected failure (${rule.status} ${reason})`);
  }

  #reply(res: ServerResponse, rec: RequestRecord, code: number, body: unknown): void {
    rec.status = code;
    if (typeof body === "string") {
      res.writeHead(code, { "Content-Type": "text/plain; charset=utf-8" }).end(body);
    } else {
      res.writeHead(code, { "Content-Type": "application/json" }).end(JSON.stringify(body));
    }
    this.#log.settle(rec);
  }

  #serveResource(
    res: ServerResponse,
    rec: RequestRecord,
    route: ResourceRoute,
    method: string,
    query: Record<string, string>,
    contentType: string,
    body: unknown,
  ): void {
    const { r, name, namespace, subresource } = route;
    if (subresource !== undefined && !(subresource === "status" && r.statusSubresource)) throw errors.noSuchPath();
    if (subresource !== undefined && !["GET", "PUT", "PATCH"].includes(method)) throw errors.methodNotAllowed(method);
    switch (method) {
      case "GET":
        if (rec.verb === "watch") return this.#watch(res, rec, route, query);
        if (name !== undefined) return this.#reply(res, rec, 200, this.store.getObject(r, name, namespace));
        return this.#reply(res, rec, 200, listBody(this.store, r, namespace, query));
      case "POST":
        if (name !== undefined) throw errors.methodNotAllowed(method);
        return this.#reply(res, rec, 201, createFromBody(this.store, r, namespace, body));
      case "PUT":
        if (name === undefined) throw errors.methodNotAllowed(method);
        return this.#reply(res, rec, 200, updateFromBody(this.store, r, name, namespace, subresource, body));
      case "PATCH":
        if (name === undefined) throw errors.methodNotAllowed(method);
        return this.#reply(res, rec, 200, patchFromBody(this.store, r, name, namespace, subresource, contentType, body));
      case "DELETE":
        if (name === undefined) return this.#reply(res, rec, 200, deleteCollection(this.store, r, namespace, query));
        return this.#reply(res, rec, 200, deleteFromRequest(this.store, r, name, namespace, body, query, this.#opts.gracefulPodDeletion === true));
      default:
        throw errors.methodNotAllowed(method);
    }
  }

  #watch(res: ServerResponse, rec: RequestRecord, route: ResourceRoute, query: Record<string, string>): void {
    const { r, namespace, name } = route;
    const filter = watchFilter(r, namespace, query);
    if (name !== undefined) filter.fieldSelector.push({ field: "metadata.name", op: "=", value: name });
    const fromRv = parseRv(query["resourceVersion"]);
    const sendInitial = isTrue(query["sendInitialEvents"]);
    const allowBookmarks = isTrue(query["allowWatchBookmarks"]);
    const timeouts = [Number(query["timeoutSeconds"] ?? "0"), this.#opts.maxWatchSeconds ?? 0].filter((t) => Number.isFinite(t) && t > 0);

    // Everything from here to subscription is synchronous: no commit can slip in between the
    // replay and the live stream.
    const start = (): void => {
      const session = new WatchSession(res, r, filter, allowBookmarks, () => this.#watches.delete(session));
      let replay: WireEvent[];
      let expired: ApiError | undefined;
      if (fromRv === undefined || sendInitial) {
        replay = this.store.listObjects(r, filter).map((o) => ({ type: "ADDED", object: o }));
      } else {
        try {
          replay = this.store.eventsSince(fromRv).flatMap((ev) => session.translate(ev) ?? []);
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          expired = err;
          replay = [];
        }
      }
      session.open();
      rec.status = 200;
      this.#log.settle(rec);
      if (expired !== undefined) {
        session.fail(expired.toStatus());
        return;
      }
      this.#watches.add(session);
      for (const ev of replay) session.send(ev);
      if (sendInitial) session.bookmark(this.store.resourceVersion, { "k8s.io/initial-events-end": "true" });
      if (timeouts.length > 0) session.endAfter(Math.min(...timeouts) * 1000);
      session.bookmarkEvery(this.#opts.bookmarkIntervalMs ?? 1000, () => this.store.resourceVersion);
    };
    if (this.#holding) {
      this.#held.push({ res, start });
      res.on("close", () => {
        this.#held = this.#held.filter((h) => h.res !== res);
      });
      return;
    }
    start();
  }
}
