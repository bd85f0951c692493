/**
 * @module
 * Small helpers shared by the unit and behaviour tests: annotated hex
 * vectors, a seeded PRNG for fuzz loops, the spec's test key (spec §2.4:
 * secret key 32×`0x2a`), and an assertion that a function throws only the
 * error classes a decoder may throw.
 */

import assert from "node:assert/strict";

/**
 * Bytes from hex. Whitespace is ignored, so vectors can be written in the
 * spec's annotated form (`"04 K 476f…"` after substituting `K`).
 */
export function hex(text: string): Uint8Array<ArrayBuffer> {
  const clean = text.replace(/\s+/g, "");
  assert.equal(clean.length % 2, 0, `odd hex length: ${clean}`);
  assert.match(clean, /^[0-9a-fA-F]*$/);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Lowercase hex of `b`. */
export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** Concatenation of byte arrays. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** UTF-8 bytes of `s`. */
export function utf8(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** The spec's test secret key: 32 × `0x2a` (spec §2.4). */
export const TEST_SECRET: Uint8Array = new Uint8Array(32).fill(0x2a);
/** Hex of the public key of {@link TEST_SECRET} (`K` in the spec's vectors). */
export const K_HEX = "197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61";
/** `K` as bytes. */
export const K: Uint8Array = hex(K_HEX);

/**
 * A seeded PRNG (mulberry32): fuzz loops are reproducible, and a failure
 * names its seed and iteration.
 */
export class Rng {
  #s: number;

  /** @param seed any 32-bit integer */
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }

  /** Uniform 32-bit unsigned integer. */
  u32(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Integer in `[0, n)`. */
  int(n: number): number {
    return this.u32() % n;
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /** One element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

/**
 * A perturbed copy of `v`: bytes flipped, inserted, removed, truncated or
 * extended, so fuzz inputs stay close to valid frames.
 */
export function perturb(rng: Rng, v: Uint8Array): Uint8Array {
  let b: Uint8Array = v.slice();
  const edits = 1 + rng.int(4);
  for (let e = 0; e < edits; e++) {
    switch (rng.int(6)) {
      case 0: // flip one byte
        if (b.length > 0) b[rng.int(b.length)] = rng.u32() & 0xff;
        break;
      case 1: // truncate
        b = b.subarray(0, rng.int(b.length + 1)).slice();
        break;
      case 2: // extend with random bytes
        b = concatBytes(b, rng.bytes(1 + rng.int(8)));
        break;
      case 3: { // insert a byte
        const i = rng.int(b.length + 1);
        b = concatBytes(b.subarray(0, i), Uint8Array.of(rng.u32() & 0xff), b.subarray(i));
        break;
      }
      case 4: { // remove a byte
        if (b.length === 0) break;
        const i = rng.int(b.length);
        b = concatBytes(b.subarray(0, i), b.subarray(i + 1));
        break;
      }
      case 5: // set a boundary value
        if (b.length > 0) b[rng.int(b.length)] = rng.pick([0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xff]);
        break;
    }
  }
  return b;
}

/**
 * Runs `fn` and fails unless it returns or throws one of `allowed`
 * (decoders may only throw SyntaxError or RangeError).
 */
export function assertOnlyThrows(
  fn: () => unknown,
  allowed: readonly (new (...args: never[]) => Error)[],
  context: string,
): void {
  try {
    fn();
  } catch (e) {
    if (allowed.some((cls) => e instanceof cls)) return;
    assert.fail(`${context}: unexpected ${(e as Error)?.constructor?.name}: ${(e as Error)?.message ?? e}`);
  }
}
