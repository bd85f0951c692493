/**
 * @module
 * z-base-32 (spec §1.1), the text form of a pkarr/iroh public key in URLs
 * and DNS labels: alphabet `ybndrfg8ejkmcpqxot1uwisza345h769`, MSB-first
 * 5-bit groups, no padding; 32 bytes are 52 characters.
 *
 * Hand-written (30 lines) rather than npm `z32`: decoding here must be
 * strict like iroh's `data_encoding` (lowercase only, non-zero trailing
 * bits rejected) so that one key has exactly one name, and DNS callers
 * lowercase the label first.
 */

const ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769";
const VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;

/** Length of a 32-byte key in z-base-32. */
export const Z32_KEY_LEN = 52;

/** Encodes bytes as z-base-32 (lowercase, no padding). */
export function z32Encode(bytes: Uint8Array): string {
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >>> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

/**
 * Decodes z-base-32, strictly: only the lowercase alphabet, and the unused
 * trailing bits must be zero.
 * @returns the bytes, or null if `text` is not canonical z-base-32
 */
export function z32Decode(text: string): Uint8Array | null {
  const n = Math.floor((text.length * 5) / 8);
  // A length whose leftover bits could hold a whole character more is not canonical.
  if (text.length !== Math.ceil((n * 8) / 5)) return null;
  const out = new Uint8Array(n);
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? VALUE[c]! : -1;
    if (v < 0) return null;
    acc = ((acc << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) return null;
  return out;
}

/**
 * The 32-byte key a z-base-32 label names, or null. The label should be
 * lowercased first (DNS is case-insensitive; spec §1.1).
 */
export function z32DecodeKey(text: string): Uint8Array | null {
  if (text.length !== Z32_KEY_LEN) return null;
  return z32Decode(text);
}
