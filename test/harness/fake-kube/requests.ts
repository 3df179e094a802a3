// Every request the fake receives, described the way RBAC sees it, so a test can compare what
// our binaries really call with the Roles in deploy/ (and wait for a call to happen).

export type RbacVerb = "get" | "list" | "watch" | "create" | "update" | "patch" | "delete" | "deletecollection";

export interface RequestRecord {
  /** Arrival order, from 0. */
  seq: number;
  method: string;
  /** URL path without the query. */
  path: string;
  query: Record<string, string>;
  /** RBAC verb; for a non-resource URL (discovery, /version) the HTTP verb in lower case. */
  verb: RbacVerb | string;
  /** API group ("" for core); undefined for a non-resource URL. */
  apiGroup?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  nonResourceURL?: string;
  contentType?: string;
  /** Parsed JSON body of a write. */
  body?: unknown;
  /** HTTP status answered (a watch records 200 when its stream starts). */
  status?: number;
}

/** `pods/status` style name used in RBAC rules. */
export function rbacResource(rec: RequestRecord): string | undefined {
  if (rec.resource === undefined) return undefined;
  return rec.subresource ? `${rec.resource}/${rec.subresource}` : rec.resource;
}

export interface RbacUse {
  apiGroup: string;
  /** `pods` or `pods/status`. */
  resource: string;
  verbs: string[];
}

/**
 * The (apiGroup, resource, verbs) a set of requests needed, sorted, in the shape of RBAC
 * PolicyRules: compare with a Role/ClusterRole to prove it grants exactly what is used.
 */
export function rbacUsage(records: readonly RequestRecord[]): RbacUse[] {
  const m = new Map<string, Set<string>>();
  for (const r of records) {
    const res = rbacResource(r);
    if (res === undefined) continue;
    const key = `${r.apiGroup ?? ""}|${res}`;
    const verbs = m.get(key) ?? new Set<string>();
    verbs.add(r.verb);
    m.set(key, verbs);
  }
  return rbacUsesOf(m);
}

/** Verbs keyed by `apiGroup|resource` → sorted RbacUse entries (shared with tests reading Roles). */
export function rbacUsesOf(m: ReadonlyMap<string, ReadonlySet<string>>): RbacUse[] {
  return [...m.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, verbs]) => {
      const [apiGroup, resource] = key.split("|") as [string, string];
      return { apiGroup, resource, verbs: [...verbs].sort() };
    });
}

export type RequestPredicate = (rec: RequestRecord) => boolean;

interface Waiter {
  pred: RequestPredicate;
  since: number;
  resolve: (rec: RequestRecord) => void;
}

export class RequestLog {
  readonly records: RequestRecord[] = [];
  #waiters = new Set<Waiter>();
  #nextSeq = 0;

  add(rec: Omit<RequestRecord, "seq">): RequestRecord {
    const full: RequestRecord = { seq: this.#nextSeq++, ...rec };
    this.records.push(full);
    this.settle(full);
    return full;
  }

  /** Offers a record to the waiters: on arrival, and again once its status is known. */
  settle(rec: RequestRecord): void {
    for (const w of [...this.#waiters]) {
      if (rec.seq >= w.since && w.pred(rec)) {
        this.#waiters.delete(w);
        w.resolve(rec);
      }
    }
  }

  clear(): void {
    this.records.length = 0;
  }

  /**
   * Resolves with the first request (seq >= since, default: any so far) matching `pred`,
   * including ones already received, so there is no race with a request sent just before.
   * The predicate sees a request on arrival (status undefined; its body not yet read) and
   * again once it is answered.
   */
  waitFor(pred: RequestPredicate, opts: { timeoutMs?: number; since?: number } = {}): Promise<RequestRecord> {
    const since = opts.since ?? 0;
    const timeoutMs = opts.timeoutMs ?? 5000;
    const found = this.records.find((r) => r.seq >= since && pred(r));
    if (found !== undefined) return Promise.resolve(found);
    return new Promise<RequestRecord>((resolve, reject) => {
      const w: Waiter = {
        pred,
        since,
        resolve: (rec) => {
          clearTimeout(timer);
          resolve(rec);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(w);
        reject(new Error(`fake-kube: no matching request within ${timeoutMs} ms (received ${this.records.length} requests)`));
      }, timeoutMs);
      this.#waiters.add(w);
    });
  }

  /** Next sequence number: pass as `since` to wait only for requests made from now on. */
  get nextSeq(): number {
    return this.#nextSeq;
  }
}
