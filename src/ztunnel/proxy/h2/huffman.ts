import { HUFFMAN_CODES, HUFFMAN_LENGTHS } from "./huffman-table.js";

// HPACK's static Huffman code (RFC 7541 §5.2, Appendix B). Decoding walks a binary tree built
// once from the code table; a string whose padding is longer than 7 bits, is not a prefix of
// EOS, or that contains EOS is a decoding error (the caller turns it into COMPRESSION_ERROR).

export class HuffmanError extends Error {}

const EOS = 256;

/** Tree as two child arrays; a leaf is stored as -(symbol + 1). */
interface Tree {
  readonly zero: Int32Array;
  readonly one: Int32Array;
}

let tree: Tree | undefined;

function buildTree(): Tree {
  // 256 internal nodes suffice for a complete prefix code over 257 symbols.
  const zero = new Int32Array(257);
  const one = new Int32Array(257);
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const code = HUFFMAN_CODES[sym];
    const len = HUFFMAN_LENGTHS[sym];
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = (code >>> i) & 1;
      const arr = bit === 0 ? zero : one;
      if (i === 0) {
        arr[node] = -(sym + 1);
      } else {
        if (arr[node] === 0) arr[node] = nodes++;
        node = arr[node];
      }
    }
  }
  return { zero, one };
}

/** Bytes the Huffman form of `s` takes. */
export function huffmanLength(s: Buffer): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += HUFFMAN_LENGTHS[s[i]];
  return (bits + 7) >>> 3;
}

/** Writes the Huffman form of `s` at `out[off]`; returns the offset after it. */
export function huffmanEncode(s: Buffer, out: Buffer, off: number): number {
  // Pending bits as a plain number: at most 7 left over plus a 30-bit code stay well inside
  // the 53 bits a double holds exactly (32-bit shifts would overflow).
  let acc = 0;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const sym = s[i];
    const len = HUFFMAN_LENGTHS[sym];
    acc = acc * 2 ** len + HUFFMAN_CODES[sym];
    n += len;
    while (n >= 8) {
      n -= 8;
      const scale = 2 ** n;
      out[off++] = Math.floor(acc / scale) & 0xff;
      acc %= scale;
    }
  }
  if (n > 0) out[off++] = ((acc << (8 - n)) | ((1 << (8 - n)) - 1)) & 0xff; // pad with EOS's leading 1s
  return off;
}

/** Decodes a Huffman-coded string. */
export function huffmanDecode(src: Buffer): Buffer {
  const t = (tree ??= buildTree());
  // Shortest code is 5 bits, so the output is at most 8/5 of the input.
  const out = Buffer.allocUnsafe(Math.ceil((src.length * 8) / 5));
  let o = 0;
  let node = 0;
  let depth = 0; // bits since the last symbol
  let allOnes = true; // those bits were all 1 (a valid padding prefix)
  for (let i = 0; i < src.length; i++) {
    const byte = src[i];
    for (let b = 7; b >= 0; b--) {
      const bit = (byte >>> b) & 1;
      const next = bit === 0 ? t.zero[node] : t.one[node];
      depth++;
      if (bit === 0) allOnes = false;
      if (next < 0) {
        const sym = -next - 1;
        if (sym === EOS) throw new HuffmanError("Huffman string contains EOS");
        out[o++] = sym;
        node = 0;
        depth = 0;
        allOnes = true;
      } else {
        node = next;
      }
    }
  }
  if (depth > 7) throw new HuffmanError("Huffman padding longer than 7 bits");
  if (!allOnes) throw new HuffmanError("Huffman padding is not a prefix of EOS");
  return out.subarray(0, o);
}
