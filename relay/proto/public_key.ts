/**
 * @module
 * Ed25519 public keys as the relay sees them: the 32 bytes that name an
 * endpoint (NodeId in 0.35, EndpointId in 1.x).
 *
 * - {@link keyId}: a compact string form used as a `Map` key on the hot path.
 * - {@link keyBase32}: the base32 text form (config files are read by
 *   `config/key_text.ts`).
 * - {@link isSmallOrder}: the check that makes signature verification strict;
 *   {@link isCurvePoint}: whether 32 bytes are a key at all (upstream's decoding).
 */

import { ed25519 } from "@noble/curves/ed25519";
import { KEY_LEN } from "./frame_type.ts";

/**
 * Returns a 32-character string holding the key bytes one per char. It is the
 * cheapest stable `Map` key for 32 bytes: no hex formatting on every packet.
 */
export function keyId(key: Uint8Array): string {
  return String.fromCharCode.apply(null, key as unknown as number[]);
}

/** {@link keyId} of the key at `buf[off..off+32]`, without making a view first. */
export function keyIdAt(buf: Uint8Array, off: number): string {
  return String.fromCharCode(
    buf[off]!,
    buf[off + 1]!,
    buf[off + 2]!,
    buf[off + 3]!,
    buf[off + 4]!,
    buf[off + 5]!,
    buf[off + 6]!,
    buf[off + 7]!,
    buf[off + 8]!,
    buf[off + 9]!,
    buf[off + 10]!,
    buf[off + 11]!,
    buf[off + 12]!,
    buf[off + 13]!,
    buf[off + 14]!,
    buf[off + 15]!,
    buf[off + 16]!,
    buf[off + 17]!,
    buf[off + 18]!,
    buf[off + 19]!,
    buf[off + 20]!,
    buf[off + 21]!,
    buf[off + 22]!,
    buf[off + 23]!,
    buf[off + 24]!,
    buf[off + 25]!,
    buf[off + 26]!,
    buf[off + 27]!,
    buf[off + 28]!,
    buf[off + 29]!,
    buf[off + 30]!,
    buf[off + 31]!,
  );
}

/** A key as eight little-endian 32-bit words, for {@link sameKeyAt}. */
export function keyWords(buf: Uint8Array, off: number): Uint32Array {
  const dv = new DataView(buf.buffer, buf.byteOffset + off, KEY_LEN);
  const w = new Uint32Array(8);
  for (let i = 0; i < 8; i++) w[i] = dv.getUint32(4 * i, true);
  return w;
}

/**
 * True if the key whose {@link keyWords} are `w` equals the 32 bytes at
 * `off` in `dv`. Word compares through a DataView take about a quarter of
 * the time of a byte loop, and this runs once per forwarded datagram.
 */
export function sameKeyAt(w: Uint32Array, dv: DataView, off: number): boolean {
  return dv.getUint32(off, true) === w[0] && dv.getUint32(off + 4, true) === w[1] &&
    dv.getUint32(off + 8, true) === w[2] && dv.getUint32(off + 12, true) === w[3] &&
    dv.getUint32(off + 16, true) === w[4] && dv.getUint32(off + 20, true) === w[5] &&
    dv.getUint32(off + 24, true) === w[6] && dv.getUint32(off + 28, true) === w[7];
}

/** Converts a {@link keyId} back into key bytes. */
export function keyFromId(id: string): Uint8Array {
  const out = new Uint8Array(KEY_LEN);
  for (let i = 0; i < KEY_LEN; i++) out[i] = id.charCodeAt(i);
  return out;
}

/** Lowercase hex of a key (for logs, metrics and the HTTP access hook). */
export function keyHex(key: Uint8Array): string {
  let s = "";
  for (const b of key) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Short form for logs: the first 10 hex characters. */
export function keyShort(key: Uint8Array): string {
  return keyHex(key.subarray(0, 5));
}

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** Encodes a key as lowercase RFC 4648 base32 without padding (52 characters). */
export function keyBase32(key: Uint8Array): string {
  let s = "";
  let acc = 0;
  let bits = 0;
  for (const b of key) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      s += BASE32[(acc >>> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) s += BASE32[(acc << (5 - bits)) & 31];
  return s;
}

/**
 * Encodings of the eight small-order points, compared with the sign bit
 * cleared. The list is the one libsodium uses (`has_small_order`): it also
 * holds the non-canonical encodings p and p+1 of y = 0 and y = 1.
 */
const SMALL_ORDER: readonly Uint8Array[] = [
  // 0 (order 4)
  new Uint8Array(32),
  // 1 (order 1)
  Uint8Array.of(1, ...new Array(31).fill(0)),
  // order 8
  Uint8Array.of(
    0x26,
    0xe8,
    0x95,
    0x8f,
    0xc2,
    0xb2,
    0x27,
    0xb0,
    0x45,
    0xc3,
    0xf4,
    0x89,
    0xf2,
    0xef,
    0x98,
    0xf0,
    0xd5,
    0xdf,
    0xac,
    0x05,
    0xd3,
    0xc6,
    0x33,
    0x39,
    0xb1,
    0x38,
    0x02,
    0x88,
    0x6d,
    0x53,
    0xfc,
    0x05,
  ),
  // order 8
  Uint8Array.of(
    0xc7,
    0x17,
    0x6a,
    0x70,
    0x3d,
    0x4d,
    0xd8,
    0x4f,
    0xba,
    0x3c,
    0x0b,
    0x76,
    0x0d,
    0x10,
    0x67,
    0x0f,
    0x2a,
    0x20,
    0x53,
    0xfa,
    0x2c,
    0x39,
    0xcc,
    0xc6,
    0x4e,
    0xc7,
    0xfd,
    0x77,
    0x92,
    0xac,
    0x03,
    0x7a,
  ),
  // p - 1 (order 2)
  Uint8Array.of(0xec, ...new Array(30).fill(0xff), 0x7f),
  // p (non-canonical 0, order 4)
  Uint8Array.of(0xed, ...new Array(30).fill(0xff), 0x7f),
  // p + 1 (non-canonical 1, order 1)
  Uint8Array.of(0xee, ...new Array(30).fill(0xff), 0x7f),
];

/** True if the 32-byte point encoding `p` is one of the small-order points. */
export function isSmallOrder(p: Uint8Array): boolean {
  outer: for (const s of SMALL_ORDER) {
    for (let i = 0; i < 31; i++) if (p[i] !== s[i]) continue outer;
    if ((p[31]! & 0x7f) === s[31]) return true;
  }
  return false;
}

/** True if `p` encodes y ≥ 2^255 - 19, i.e. is not the canonical encoding. */
export function isNonCanonicalPoint(p: Uint8Array): boolean {
  if ((p[31]! & 0x7f) !== 0x7f) return false;
  for (let i = 30; i > 0; i--) if (p[i] !== 0xff) return false;
  return p[0]! >= 0xed;
}

/**
 * True if `key` decodes as an Ed25519 public key the way upstream's
 * `PublicKey::from_bytes` decodes it: 32 bytes that decompress to a curve
 * point. Weak (small-order) points pass here, as upstream; signature
 * verification refuses them. Costs one point decompression (~40 µs), so
 * callers cache the answer.
 */
export function isCurvePoint(key: Uint8Array): boolean {
  if (key.length !== KEY_LEN) return false;
  try {
    ed25519.Point.fromBytes(key);
    return true;
  } catch {
    return false;
  }
}

/**
 * Remembers which keys were checked with {@link isCurvePoint}, up to a bound
 * (`key_cache_capacity`), so a busy sender does not pay a decompression per
 * packet. Eviction is oldest-first; the cache is only an optimisation.
 */
export class KeyValidityCache {
  #known = new Map<string, boolean>();
  #capacity: number;

  /** @param capacity most keys remembered; 0 disables caching */
  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** Checks the key whose {@link keyId} is `id`. */
  isValid(id: string, key: Uint8Array): boolean {
    const hit = this.#known.get(id);
    if (hit !== undefined) return hit;
    const ok = isCurvePoint(key);
    if (this.#capacity > 0) {
      if (this.#known.size >= this.#capacity) {
        this.#known.delete(this.#known.keys().next().value!);
      }
      this.#known.set(id, ok);
    }
    return ok;
  }
}
