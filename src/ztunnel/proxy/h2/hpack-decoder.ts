import { huffmanDecode, HuffmanError } from "./huffman.js";
import { DynamicTable, entrySize, STATIC_TABLE, type HeaderField } from "./hpack-table.js";

// HPACK decoder (RFC 7541): indexed fields, literals with/without/never indexing, dynamic table
// size updates, Huffman strings. Every length is checked against the bytes actually left in the
// block before anything is allocated. A block over the header-list limit is still decoded to
// the end (the dynamic table must stay in step with the peer's encoder) but its fields are
// dropped and `oversize` says so; the caller refuses the stream, not the connection.

export class HpackError extends Error {}

export interface DecodedBlock {
  readonly headers: HeaderField[];
  /** The decoded list (RFC 9113 §6.5.2 size) exceeded maxHeaderListSize. */
  readonly oversize: boolean;
}

/** Integers larger than this are refused (they could only index nothing or overflow). */
const MAX_INT = 2 ** 31 - 1;

export class HpackDecoder {
  private readonly table: DynamicTable;

  /**
   * @param settingsTableSize the SETTINGS_HEADER_TABLE_SIZE we advertise: the most a size
   *   update from the peer may ask for.
   */
  constructor(
    private readonly settingsTableSize = 4096,
    private readonly maxHeaderListSize = Infinity,
  ) {
    this.table = new DynamicTable(settingsTableSize);
  }

  get tableSize(): number {
    return this.table.size;
  }

  decode(block: Buffer): DecodedBlock {
    const headers: HeaderField[] = [];
    let listSize = 0;
    let oversize = false;
    let pos = 0;
    let fieldSeen = false;
    const int = (prefixBits: number): number => {
      const r = decodeInt(block, pos, prefixBits);
      pos = r.next;
      return r.value;
    };
    const str = (): string => {
      if (pos >= block.length) throw new HpackError("header block truncated before a string");
      const huffman = (block[pos] & 0x80) !== 0;
      const len = int(7);
      if (len > block.length - pos) throw new HpackError(`string of ${len} bytes overruns the header block`);
      const raw = block.subarray(pos, pos + len);
      pos += len;
      if (!huffman) return raw.toString("latin1");
      try {
        return huffmanDecode(raw).toString("latin1");
      } catch (err) {
        if (err instanceof HuffmanError) throw new HpackError(err.message);
        throw err;
      }
    };
    const emit = (name: string, value: string): void => {
      fieldSeen = true;
      listSize += entrySize(name, value);
      if (listSize > this.maxHeaderListSize) oversize = true;
      if (!oversize) headers.push([name, value]);
    };

    while (pos < block.length) {
      const b = block[pos];
      if (b & 0x80) {
        // Indexed field (§6.1).
        const idx = int(7);
        const f = this.lookup(idx);
        emit(f[0], f[1]);
      } else if ((b & 0xc0) === 0x40) {
        // Literal with incremental indexing (§6.2.1).
        const idx = int(6);
        const name = idx === 0 ? str() : this.lookup(idx)[0];
        const value = str();
        this.table.add(name, value);
        emit(name, value);
      } else if ((b & 0xe0) === 0x20) {
        // Dynamic table size update (§6.3): only before the first field of a block.
        if (fieldSeen) throw new HpackError("dynamic table size update after a header field");
        const size = int(5);
        if (size > this.settingsTableSize) throw new HpackError(`table size update to ${size} exceeds the advertised ${this.settingsTableSize}`);
        this.table.resize(size);
      } else {
        // Literal without indexing (0000) or never indexed (0001) (§6.2.2, §6.2.3).
        const idx = int(4);
        const name = idx === 0 ? str() : this.lookup(idx)[0];
        const value = str();
        emit(name, value);
      }
    }
    return { headers: oversize ? [] : headers, oversize };
  }

  private lookup(idx: number): HeaderField {
    if (idx === 0) throw new HpackError("index 0 is not a header field");
    if (idx <= STATIC_TABLE.length) return STATIC_TABLE[idx - 1];
    const f = this.table.at(idx - STATIC_TABLE.length - 1);
    if (f === undefined) throw new HpackError(`index ${idx} is beyond the dynamic table`);
    return f;
  }
}

/** RFC 7541 §5.1 integer with an N-bit prefix starting at buf[pos]. */
export function decodeInt(buf: Buffer, pos: number, prefixBits: number): { value: number; next: number } {
  if (pos >= buf.length) throw new HpackError("header block truncated inside an integer");
  const mask = (1 << prefixBits) - 1;
  let value = buf[pos] & mask;
  pos++;
  if (value < mask) return { value, next: pos };
  let shift = 0;
  for (;;) {
    if (pos >= buf.length) throw new HpackError("header block truncated inside an integer");
    const b = buf[pos++];
    value += (b & 0x7f) * 2 ** shift;
    if (value > MAX_INT) throw new HpackError("integer overflows 31 bits");
    if ((b & 0x80) === 0) return { value, next: pos };
    shift += 7;
  }
}
