import { huffmanEncode, huffmanLength } from "./huffman.js";
import { DynamicTable, entrySize, STATIC_FULL, STATIC_NAME, STATIC_TABLE, type HeaderField } from "./hpack-table.js";

// HPACK encoder (RFC 7541). Full matches become indexed fields; everything else is a literal
// with incremental indexing (name from a table when one matches), so repeated CONNECT headers
// on a pooled connection shrink to a few bytes. Values that would crowd the table, and fields
// the caller marks sensitive, are sent as never-indexed literals. A table size the peer lowered
// through SETTINGS_HEADER_TABLE_SIZE is announced at the start of the next block (§4.2).

export type HuffmanMode = "shorter" | "always" | "never";

export interface EncoderOptions {
  /** Which string form to use; "shorter" in production, the others reproduce RFC vectors. */
  huffman?: HuffmanMode;
  /** Names never added to the dynamic table (credentials; RFC 7541 §7.1.3). */
  sensitive?: ReadonlySet<string>;
  /**
   * Names whose values differ in every block (e.g. HBONE's `forwarded: for="ip:port"`): sent as
   * literals without indexing and without Huffman coding. Indexing them would only evict
   * entries that do repeat, and Huffman-coding a string used once costs more CPU than the
   * few bytes it saves.
   */
  unindexed?: ReadonlySet<string>;
}

/** Encoded name literals (length prefix and string) per string form, shared by all encoders. */
const NAME_LITERALS: Record<HuffmanMode, Map<string, Buffer>> = { shorter: new Map(), always: new Map(), never: new Map() };
/** Names are few (HBONE sends one literal name); a peer cannot grow this, the cap is a backstop. */
const MAX_CACHED_NAMES = 64;

export class HpackEncoder {
  private readonly table: DynamicTable;
  private readonly huffman: HuffmanMode;
  private readonly sensitive: ReadonlySet<string>;
  private readonly unindexed: ReadonlySet<string> | undefined;
  /** Smallest and final sizes asked for since the last block, to be announced. */
  private pendingMin: number | undefined;
  private pendingFinal: number | undefined;

  constructor(tableSize = 4096, opts: EncoderOptions = {}) {
    this.table = new DynamicTable(tableSize);
    this.huffman = opts.huffman ?? "shorter";
    this.sensitive = opts.sensitive ?? new Set();
    this.unindexed = opts.unindexed;
  }

  get tableSize(): number {
    return this.table.size;
  }

  /** The peer's SETTINGS_HEADER_TABLE_SIZE changed. */
  setMaxTableSize(size: number): void {
    this.pendingMin = Math.min(this.pendingMin ?? size, size);
    this.pendingFinal = size;
  }

  encode(headers: readonly HeaderField[]): Buffer {
    // Each field takes at most its two strings, two length prefixes (≤ 6 bytes each) and an
    // index; forced Huffman can stretch a string up to 30 bits per byte.
    const stretch = this.huffman === "always" ? 4 : 1;
    let cap = 16;
    for (const [n, v] of headers) cap += (n.length + v.length) * stretch + 16;
    const out = Buffer.allocUnsafe(cap);
    let pos = 0;
    if (this.pendingFinal !== undefined) {
      // The smallest size reached must be signalled so the decoder evicts as we did (§4.2).
      if (this.pendingMin !== undefined && this.pendingMin < this.pendingFinal) {
        pos = encodeInt(out, pos, this.pendingMin, 5, 0x20);
        this.table.resize(this.pendingMin);
      }
      pos = encodeInt(out, pos, this.pendingFinal, 5, 0x20);
      this.table.resize(this.pendingFinal);
      this.pendingMin = this.pendingFinal = undefined;
    }
    for (const [name, value] of headers) pos = this.field(out, pos, name, value);
    return out.subarray(0, pos);
  }

  private field(out: Buffer, pos: number, name: string, value: string): number {
    if (this.unindexed?.has(name) === true) {
      const nameIdx = STATIC_NAME.get(name) ?? 0;
      pos = encodeInt(out, pos, nameIdx, 4, 0x00);
      if (nameIdx === 0) pos = this.name(out, pos, name);
      pos = encodeInt(out, pos, value.length, 7, 0x00);
      return pos + out.write(value, pos, "latin1");
    }
    const never = this.sensitive.has(name);
    if (!never) {
      const st = STATIC_FULL.get(`${name}\0${value}`);
      if (st !== undefined) return encodeInt(out, pos, st, 7, 0x80);
    }
    const dyn = this.table.find(name, value);
    if (!never && dyn.full >= 0) return encodeInt(out, pos, dyn.full + STATIC_TABLE.length + 1, 7, 0x80);
    const nameIdx = STATIC_NAME.get(name) ?? (dyn.name >= 0 ? dyn.name + STATIC_TABLE.length + 1 : 0);
    // An entry over half the table would evict most of what is there for one use.
    const index = !never && entrySize(name, value) <= this.table.maxSize / 2;
    if (index) pos = encodeInt(out, pos, nameIdx, 6, 0x40);
    else pos = encodeInt(out, pos, nameIdx, 4, never ? 0x10 : 0x00);
    if (nameIdx === 0) pos = this.name(out, pos, name);
    pos = this.string(out, pos, value);
    if (index) this.table.add(name, value);
    return pos;
  }

  /** A name as a string literal: the same few names on every CONNECT, so encoded once. */
  private name(out: Buffer, pos: number, name: string): number {
    const cache = NAME_LITERALS[this.huffman];
    let lit = cache.get(name);
    if (lit === undefined) {
      const tmp = Buffer.allocUnsafe(name.length * 4 + 6);
      lit = Buffer.from(tmp.subarray(0, this.string(tmp, 0, name)));
      if (cache.size < MAX_CACHED_NAMES) cache.set(name, lit);
    }
    lit.copy(out, pos);
    return pos + lit.length;
  }

  private string(out: Buffer, pos: number, s: string): number {
    const raw = Buffer.from(s, "latin1");
    const hlen = this.huffman === "never" ? Infinity : huffmanLength(raw);
    if (this.huffman === "always" || hlen < raw.length) {
      pos = encodeInt(out, pos, hlen, 7, 0x80);
      return huffmanEncode(raw, out, pos);
    }
    pos = encodeInt(out, pos, raw.length, 7, 0x00);
    raw.copy(out, pos);
    return pos + raw.length;
  }
}

/** RFC 7541 §5.1 integer with an N-bit prefix; `flags` fills the bits above the prefix. */
export function encodeInt(out: Buffer, pos: number, value: number, prefixBits: number, flags: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out[pos++] = flags | value;
    return pos;
  }
  out[pos++] = flags | max;
  value -= max;
  while (value >= 128) {
    out[pos++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[pos++] = value;
  return pos;
}
