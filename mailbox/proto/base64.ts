/**
 * @module
 * Unpadded Base64 (Matrix spec appendices, "Unpadded Base64"): RFC 4648's
 * standard alphabet without `=`. Decoding accepts input with or without
 * padding, as the spec asks, and nothing else (no URL-safe alphabet, no
 * whitespace). Non-zero trailing bits are ignored, as common decoders do:
 * the spec's own test seed (`YJDBA9…XA1`) has them.
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const VALUES = new Int8Array(128).fill(-1);
for (let k = 0; k < ALPHABET.length; k++) VALUES[ALPHABET.charCodeAt(k)] = k;

/**
 * Encodes bytes as unpadded Base64.
 * @example
 * ```ts
 * import { encodeUnpaddedBase64 } from "./base64.ts";
 * if (encodeUnpaddedBase64(new TextEncoder().encode("fo")) !== "Zm8") throw new Error("bad");
 * ```
 */
export function encodeUnpaddedBase64(bytes: Uint8Array): string {
  let out = "";
  let k = 0;
  for (; k + 3 <= bytes.length; k += 3) {
    const n = (bytes[k]! << 16) | (bytes[k + 1]! << 8) | bytes[k + 2]!;
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + ALPHABET[n & 63]!;
  }
  const rest = bytes.length - k;
  if (rest === 1) {
    const n = bytes[k]! << 16;
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]!;
  } else if (rest === 2) {
    const n = (bytes[k]! << 16) | (bytes[k + 1]! << 8);
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]!;
  }
  return out;
}

/**
 * Decodes Base64 with or without padding; `null` if the text is not Base64.
 */
export function decodeBase64(text: string): Uint8Array | null {
  let t = text;
  if (t.length % 4 === 0 && t.endsWith("==")) t = t.slice(0, -2);
  else if (t.length % 4 === 0 && t.endsWith("=")) t = t.slice(0, -1);
  if (t.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((t.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let k = 0; k < t.length; k++) {
    const c = t.charCodeAt(k);
    const v = c < 128 ? VALUES[c]! : -1;
    if (v < 0) return null;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
      acc &= (1 << bits) - 1;
    }
  }
  return out;
}
