// HPACK header tables (RFC 7541 §2.3): the static table of Appendix A, and the dynamic table,
// a FIFO bounded in octets (an entry costs name + value + 32) that evicts its oldest entries.

export type HeaderField = readonly [name: string, value: string];

export const STATIC_TABLE: readonly HeaderField[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/** Octets an entry counts against the table size (RFC 7541 §4.1). */
export function entrySize(name: string, value: string): number {
  return name.length + value.length + 32;
}

/** Static-table lookups for the encoder: full match and name-only match (1-based indexes). */
export const STATIC_FULL = new Map<string, number>();
export const STATIC_NAME = new Map<string, number>();
STATIC_TABLE.forEach(([n, v], i) => {
  const key = `${n}\0${v}`;
  if (!STATIC_FULL.has(key)) STATIC_FULL.set(key, i + 1);
  if (!STATIC_NAME.has(n)) STATIC_NAME.set(n, i + 1);
});

export class DynamicTable {
  /** Newest first: entries[0] has HPACK index 62. */
  private entries: HeaderField[] = [];
  private octets = 0;

  constructor(private max: number) {}

  get size(): number {
    return this.octets;
  }

  get maxSize(): number {
    return this.max;
  }

  get length(): number {
    return this.entries.length;
  }

  /** Entry at a dynamic index (0 = newest), or undefined. */
  at(i: number): HeaderField | undefined {
    return this.entries[i];
  }

  add(name: string, value: string): void {
    const size = entrySize(name, value);
    // An entry larger than the table empties it and is not added (§4.4).
    this.evictTo(this.max - size);
    if (size <= this.max) {
      this.entries.unshift([name, value]);
      this.octets += size;
    }
  }

  resize(max: number): void {
    this.max = max;
    this.evictTo(max);
  }

  /** Dynamic index of an exact match, and of a name match, newest first (-1 = none). */
  find(name: string, value: string): { full: number; name: number } {
    let byName = -1;
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i];
      if (e[0] !== name) continue;
      if (e[1] === value) return { full: i, name: i };
      if (byName < 0) byName = i;
    }
    return { full: -1, name: byName };
  }

  private evictTo(limit: number): void {
    while (this.octets > limit && this.entries.length > 0) {
      const e = this.entries.pop() as HeaderField;
      this.octets -= entrySize(e[0], e[1]);
    }
  }
}
