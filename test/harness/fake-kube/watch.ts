import type { ServerResponse } from "node:http";
import type { KubeObject, StoredEvent } from "./types.js";
import { cloneJson } from "./types.js";
import { apiVersionOf, type ResourceInfo } from "./resources.js";
import { matchesFields, matchesLabels, type FieldRequirement, type LabelSelector } from "./selectors.js";
import type { StatusObject } from "./status.js";

// One open watch stream: newline-delimited JSON events on a chunked 200 response, filtered the
// way the API server's watch cache filters them (an object that stops matching a selector is
// sent as DELETED, one that starts matching as ADDED).

export interface WatchFilter {
  namespace?: string;
  labelSelector: LabelSelector;
  fieldSelector: FieldRequirement[];
}

export type WireEvent =
  | { type: "ADDED" | "MODIFIED" | "DELETED"; object: KubeObject }
  | { type: "BOOKMARK"; object: KubeObject }
  | { type: "ERROR"; object: StatusObject };

export class WatchSession {
  readonly r: ResourceInfo;
  readonly filter: WatchFilter;
  readonly allowBookmarks: boolean;
  #res: ServerResponse;
  #closed = false;
  #timers: NodeJS.Timeout[] = [];
  #onClose: () => void;

  constructor(res: ServerResponse, r: ResourceInfo, filter: WatchFilter, allowBookmarks: boolean, onClose: () => void) {
    this.#res = res;
    this.r = r;
    this.filter = filter;
    this.allowBookmarks = allowBookmarks;
    this.#onClose = onClose;
    res.on("close", () => this.#cleanup());
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends the response head now, so the client's request resolves before the first event. */
  open(): void {
    this.#res.writeHead(200, {
      "Content-Type": "application/json",
      "Cache-Control": "no-cache, private",
      "Transfer-Encoding": "chunked",
    });
    this.#res.flushHeaders();
  }

  /** Ends the stream after `ms` (the client's timeoutSeconds). */
  endAfter(ms: number): void {
    const t = setTimeout(() => this.end(), ms);
    t.unref();
    this.#timers.push(t);
  }

  bookmarkEvery(ms: number, currentRv: () => string): void {
    if (!this.allowBookmarks) return;
    const t = setInterval(() => this.bookmark(currentRv()), ms);
    t.unref();
    this.#timers.push(t);
  }

  matches(obj: KubeObject): boolean {
    if (this.filter.namespace !== undefined && obj.metadata.namespace !== this.filter.namespace) return false;
    return matchesLabels(this.filter.labelSelector, obj.metadata.labels) && matchesFields(this.filter.fieldSelector, obj);
  }

  /** The event this watcher sees for a committed change, if any. */
  translate(ev: StoredEvent): WireEvent | undefined {
    if (ev.resource !== this.r.plural) return undefined;
    const now = this.matches(ev.object);
    if (ev.type !== "MODIFIED") return now ? { type: ev.type, object: ev.object } : undefined;
    const before = ev.prev === undefined ? now : this.matches(ev.prev);
    if (now && before) return { type: "MODIFIED", object: ev.object };
    if (now) return { type: "ADDED", object: ev.object };
    if (before && ev.prev !== undefined) {
      const last = cloneJson(ev.prev);
      last.metadata.resourceVersion = String(ev.rv);
      return { type: "DELETED", object: last };
    }
    return undefined;
  }

  deliver(ev: StoredEvent): void {
    const wire = this.translate(ev);
    if (wire !== undefined) this.send(wire);
  }

  send(ev: WireEvent): void {
    if (this.#closed || this.#res.destroyed) return;
    this.#res.write(JSON.stringify(ev) + "\n");
  }

  bookmark(rv: string, annotations?: Record<string, string>): void {
    if (!this.allowBookmarks) return;
    const metadata: KubeObject["metadata"] = { resourceVersion: rv };
    if (annotations !== undefined) metadata.annotations = annotations;
    this.send({ type: "BOOKMARK", object: { kind: this.r.kind, apiVersion: apiVersionOf(this.r), metadata } });
  }

  /** Sends an ERROR event (e.g. 410 Expired) and ends the stream, as the API server does. */
  fail(status: StatusObject): void {
    this.send({ type: "ERROR", object: status });
    this.end();
  }

  /** Graceful end of the stream (server-side timeout): the client re-watches from its last RV. */
  end(): void {
    if (this.#closed) return;
    this.#res.end();
    this.#cleanup();
  }

  /** Abrupt loss of the connection (TCP reset), without the chunked terminator. */
  destroy(): void {
    if (this.#closed) return;
    this.#res.socket?.destroy();
    this.#res.destroy();
    this.#cleanup();
  }

  #cleanup(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers = [];
    this.#onClose();
  }
}
