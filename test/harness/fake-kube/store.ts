import { randomUUID } from "node:crypto";
import type { KubeObject, KubeObjectInput, StoredEvent, WatchEventType } from "./types.js";
import { cloneJson, isPlainObject, jsonEqual } from "./types.js";
import { apiVersionOf, resourceInfo, type ResourceInfo, type ResourceName } from "./resources.js";
import { applyDefaults } from "./defaults.js";
import { errors } from "./status.js";
import { matchesFields, matchesLabels, type FieldRequirement, type LabelSelector } from "./selectors.js";

// The cluster's state, as etcd behind the API server holds it: one global, monotonically
// increasing resourceVersion, every committed change kept in a bounded history that watches
// resume from. Tests write here directly to play "the cluster" (kubelet, controllers); the
// HTTP layer writes here after applying the REST strategies a real server applies.

export interface ObjectStoreOptions {
  /** Events kept for watch resumption; older resourceVersions get 410 Expired. */
  maxHistory?: number;
}

export interface ListFilter {
  namespace?: string;
  labelSelector?: LabelSelector;
  fieldSelector?: FieldRequirement[];
}

export interface DeletePreconditions {
  uid?: string;
  resourceVersion?: string;
}

type Listener = (ev: StoredEvent) => void;

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const NAME_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789";

function nowRfc3339(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

function keyOf(namespace: string | undefined, name: string): string {
  return `${namespace ?? ""}/${name}`;
}

/** spec.clusterIP is immutable: an update that leaves it out keeps the allocated one. */
function keepClusterIp(next: KubeObject, old: KubeObject): void {
  const ns = next["spec"];
  const os = old["spec"];
  if (!isPlainObject(ns) || !isPlainObject(os)) return;
  if (ns["clusterIP"] === undefined && os["clusterIP"] !== undefined) ns["clusterIP"] = os["clusterIP"];
  if (ns["clusterIPs"] === undefined && os["clusterIPs"] !== undefined) ns["clusterIPs"] = os["clusterIPs"];
}

export class ObjectStore {
  readonly maxHistory: number;
  #rv = 0;
  #objects = new Map<string, Map<string, KubeObject>>();
  #history: StoredEvent[] = [];
  /** A watch from a resourceVersion below this one has lost events: 410. */
  #oldestResumable = 0;
  #listeners = new Set<Listener>();
  #nextClusterIp = 10;

  constructor(opts: ObjectStoreOptions = {}) {
    this.maxHistory = opts.maxHistory ?? 1000;
  }

  /** Current global resourceVersion (what a list returns in metadata.resourceVersion). */
  get resourceVersion(): string {
    return String(this.#rv);
  }

  // ---- test-facing API: the cluster writing its own state ----

  create(resource: ResourceName, obj: KubeObjectInput): KubeObject {
    return this.createObject(resourceInfo(resource), cloneJson(obj) as KubeObject);
  }

  get(resource: ResourceName, name: string, namespace?: string): KubeObject | undefined {
    const o = this.#bucket(resourceInfo(resource)).get(keyOf(namespace, name));
    return o === undefined ? undefined : cloneJson(o);
  }

  list(resource: ResourceName, namespace?: string): KubeObject[] {
    const filter: ListFilter = namespace === undefined ? {} : { namespace };
    return this.listObjects(resourceInfo(resource), filter).map((o) => cloneJson(o));
  }

  /** Replaces the object (no resourceVersion check unless the object carries one). */
  update(resource: ResourceName, obj: KubeObjectInput): KubeObject {
    return this.replaceObject(resourceInfo(resource), cloneJson(obj) as KubeObject);
  }

  /** Creates or replaces. */
  upsert(resource: ResourceName, obj: KubeObjectInput): KubeObject {
    const name = obj.metadata.name;
    if (name !== undefined && this.get(resource, name, obj.metadata.namespace) !== undefined) {
      const next = cloneJson(obj) as KubeObject;
      delete next.metadata.resourceVersion;
      return this.replaceObject(resourceInfo(resource), next);
    }
    return this.create(resource, obj);
  }

  /** Read-modify-write: `fn` edits a copy (or returns a new object). */
  mutate(resource: ResourceName, name: string, namespace: string | undefined, fn: (obj: KubeObject) => KubeObject | void): KubeObject {
    const r = resourceInfo(resource);
    const cur = this.getObject(r, name, namespace);
    const copy = cloneJson(cur);
    const next = fn(copy) ?? copy;
    return this.replaceObject(r, next);
  }

  delete(resource: ResourceName, name: string, namespace?: string): KubeObject {
    return this.deleteObject(resourceInfo(resource), name, namespace);
  }

  /**
   * Forgets every event so far, as an etcd compaction would: a watch resuming from any earlier
   * resourceVersion gets 410 Expired and the client must relist.
   */
  compact(): void {
    this.#rv++;
    this.#history = [];
    this.#oldestResumable = this.#rv;
  }

  // ---- used by the HTTP layer ----

  subscribe(fn: Listener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Events after `rv`, or an Expired ApiError when the history no longer reaches back there. */
  eventsSince(rv: number): StoredEvent[] {
    if (rv < this.#oldestResumable) throw errors.expired(rv, this.#oldestResumable);
    return this.#history.filter((e) => e.rv > rv);
  }

  getObject(r: ResourceInfo, name: string, namespace: string | undefined): KubeObject {
    const o = this.#bucket(r).get(keyOf(r.namespaced ? namespace : undefined, name));
    if (o === undefined) throw errors.notFound(r, name);
    return o;
  }

  listObjects(r: ResourceInfo, filter: ListFilter): KubeObject[] {
    const out: KubeObject[] = [];
    for (const o of this.#bucket(r).values()) {
      if (filter.namespace !== undefined && o.metadata.namespace !== filter.namespace) continue;
      if (filter.labelSelector && !matchesLabels(filter.labelSelector, o.metadata.labels)) continue;
      if (filter.fieldSelector && !matchesFields(filter.fieldSelector, o)) continue;
      out.push(o);
    }
    // etcd returns keys in order: /registry/<resource>/<namespace>/<name>.
    return out.sort((a, b) => {
      const ka = keyOf(a.metadata.namespace, a.metadata.name ?? "");
      const kb = keyOf(b.metadata.namespace, b.metadata.name ?? "");
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
  }

  createObject(r: ResourceInfo, obj: KubeObject): KubeObject {
    if (!isPlainObject(obj) || !isPlainObject(obj.metadata)) throw errors.badRequest(`${r.kind}: metadata is required`);
    const meta = obj.metadata;
    if (r.namespaced) {
      if (!meta.namespace) throw errors.badRequest(`${r.kind}: metadata.namespace is required for a namespaced resource`);
    } else {
      delete meta.namespace;
    }
    if (!meta.name) {
      if (!meta.generateName) throw errors.invalid(r, "", "metadata.name", "Required value: name or generateName is required");
      meta.name = meta.generateName + this.#randomSuffix();
    }
    this.#validateName(r, meta.name);
    if (this.#bucket(r).has(keyOf(meta.namespace, meta.name))) throw errors.alreadyExists(r, meta.name);
    obj.apiVersion = apiVersionOf(r);
    obj.kind = r.kind;
    meta.uid = randomUUID();
    meta.creationTimestamp = nowRfc3339();
    meta.generation = 1;
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    applyDefaults(r, obj, { allocateClusterIp: () => this.#allocateClusterIp() });
    meta.resourceVersion = String(++this.#rv);
    this.#bucket(r).set(keyOf(meta.namespace, meta.name), obj);
    this.#commit(r, "ADDED", obj);
    return cloneJson(obj);
  }

  /**
   * Replaces a stored object. Optimistic concurrency: a resourceVersion on `next` must equal the
   * stored one. A write that changes nothing is a no-op (no new resourceVersion, no event).
   */
  replaceObject(r: ResourceInfo, next: KubeObject): KubeObject {
    if (!isPlainObject(next) || !isPlainObject(next.metadata) || !next.metadata.name) {
      throw errors.badRequest(`${r.kind}: metadata.name is required`);
    }
    const name = next.metadata.name;
    const old = this.getObject(r, name, next.metadata.namespace);
    const meta = next.metadata;
    if (meta.resourceVersion && meta.resourceVersion !== old.metadata.resourceVersion) throw errors.conflict(r, name);
    if (meta.uid && meta.uid !== old.metadata.uid) {
      throw errors.conflict(r, name, `Precondition failed: UID in precondition: ${meta.uid}, UID in object meta: ${old.metadata.uid}`);
    }
    next.apiVersion = apiVersionOf(r);
    next.kind = r.kind;
    // Identity and lifecycle fields belong to the server.
    meta.uid = old.metadata.uid;
    meta.creationTimestamp = old.metadata.creationTimestamp;
    if (r.namespaced) meta.namespace = old.metadata.namespace;
    else delete meta.namespace;
    if (old.metadata.deletionTimestamp) {
      meta.deletionTimestamp = old.metadata.deletionTimestamp;
      meta.deletionGracePeriodSeconds = old.metadata.deletionGracePeriodSeconds;
    } else {
      delete meta.deletionTimestamp;
      delete meta.deletionGracePeriodSeconds;
    }
    if (r.plural === "services") keepClusterIp(next, old);
    applyDefaults(r, next, { allocateClusterIp: () => this.#allocateClusterIp() });
    meta.generation = old.metadata.generation ?? 1;
    if (!jsonEqual(next["spec"], old["spec"])) meta.generation += 1;
    meta.resourceVersion = old.metadata.resourceVersion;
    if (jsonEqual(next, old)) return cloneJson(old);

    if (meta.deletionTimestamp && (meta.finalizers ?? []).length === 0) {
      // The last finalizer went: the update completes the deletion instead.
      return this.#remove(r, next);
    }
    meta.resourceVersion = String(++this.#rv);
    this.#bucket(r).set(keyOf(meta.namespace, name), next);
    this.#commit(r, "MODIFIED", next, old);
    return cloneJson(next);
  }

  /**
   * Deletes, or with finalizers (or a grace period) marks for deletion (deletionTimestamp,
   * MODIFIED). Deleting a namespace first marks it Terminating and removes everything in it,
   * as the namespace controller would.
   */
  deleteObject(r: ResourceInfo, name: string, namespace: string | undefined, pre: DeletePreconditions = {}, graceSeconds = 0): KubeObject {
    const old = this.getObject(r, name, namespace);
    if (pre.uid && pre.uid !== old.metadata.uid) {
      throw errors.conflict(r, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid}`);
    }
    if (pre.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) {
      throw errors.conflict(r, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion}`);
    }
    if (graceSeconds > 0) {
      // Graceful deletion (pods): only marked now; the kubelet deletes it when it has stopped.
      if (old.metadata.deletionTimestamp) return cloneJson(old);
      const marked = cloneJson(old);
      marked.metadata.deletionTimestamp = new Date(Date.now() + graceSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
      marked.metadata.deletionGracePeriodSeconds = graceSeconds;
      marked.metadata.resourceVersion = String(++this.#rv);
      this.#bucket(r).set(keyOf(marked.metadata.namespace, name), marked);
      this.#commit(r, "MODIFIED", marked, old);
      return cloneJson(marked);
    }
    const hasFinalizers = (old.metadata.finalizers ?? []).length > 0;
    let current = old;
    if (!old.metadata.deletionTimestamp && (hasFinalizers || r.plural === "namespaces")) {
      const marked = cloneJson(old);
      marked.metadata.deletionTimestamp = nowRfc3339();
      marked.metadata.deletionGracePeriodSeconds = 0;
      if (r.plural === "namespaces") marked["status"] = { ...(isPlainObject(marked["status"]) ? marked["status"] : {}), phase: "Terminating" };
      marked.metadata.resourceVersion = String(++this.#rv);
      this.#bucket(r).set(keyOf(marked.metadata.namespace, name), marked);
      this.#commit(r, "MODIFIED", marked, old);
      current = marked;
    }
    if (r.plural === "namespaces") this.#emptyNamespace(name);
    if (hasFinalizers) return cloneJson(current);
    return this.#remove(r, current);
  }

  // ---- internals ----

  #emptyNamespace(ns: string): void {
    for (const [plural, bucket] of this.#objects) {
      const r = resourceInfo(plural as ResourceName);
      if (!r.namespaced) continue;
      for (const o of [...bucket.values()]) {
        if (o.metadata.namespace === ns && this.#bucket(r).has(keyOf(ns, o.metadata.name ?? ""))) {
          this.deleteObject(r, o.metadata.name ?? "", ns);
        }
      }
    }
  }

  #remove(r: ResourceInfo, last: KubeObject): KubeObject {
    const gone = cloneJson(last);
    gone.metadata.resourceVersion = String(++this.#rv);
    this.#bucket(r).delete(keyOf(gone.metadata.namespace, gone.metadata.name ?? ""));
    this.#commit(r, "DELETED", gone);
    return cloneJson(gone);
  }

  #commit(r: ResourceInfo, type: WatchEventType, object: KubeObject, prev?: KubeObject): void {
    const ev: StoredEvent = { type, resource: r.plural, rv: this.#rv, object };
    if (prev !== undefined) ev.prev = prev;
    this.#history.push(ev);
    while (this.#history.length > this.maxHistory) {
      const dropped = this.#history.shift();
      if (dropped !== undefined) this.#oldestResumable = dropped.rv;
    }
    for (const l of [...this.#listeners]) l(ev);
  }

  #bucket(r: ResourceInfo): Map<string, KubeObject> {
    let b = this.#objects.get(r.plural);
    if (b === undefined) {
      b = new Map();
      this.#objects.set(r.plural, b);
    }
    return b;
  }

  #validateName(r: ResourceInfo, name: string): void {
    const label = r.plural === "namespaces" || r.plural === "services";
    const ok = label ? name.length <= 63 && DNS_LABEL.test(name) : name.length <= 253 && DNS_SUBDOMAIN.test(name);
    if (!ok) {
      const what = label ? "a lowercase RFC 1123 label" : "a lowercase RFC 1123 subdomain";
      throw errors.invalid(r, name, "metadata.name", `Invalid value: "${name}": must be ${what}`);
    }
  }

  #randomSuffix(): string {
    let s = "";
    for (let i = 0; i < 5; i++) s += NAME_SUFFIX_CHARS[Math.floor(Math.random() * NAME_SUFFIX_CHARS.length)];
    return s;
  }

  #allocateClusterIp(): string {
    const n = this.#nextClusterIp++;
    return `10.96.${Math.floor(n / 256) % 256}.${n % 256}`;
  }
}
