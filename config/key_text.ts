/**
 * @module
 * Endpoint ids as an operator writes them in the config file (`access`
 * lists): 64 hex or 52 RFC 4648 base32 characters, as `iroh-base/src/key.rs`
 * parses them. Here rather than in relay/ so that config/ imports no service.
 */

import { ed25519 } from "@noble/curves/ed25519";

/** Bytes in an Ed25519 public key. */
const KEY_LEN = 32;

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/**
 * Parses a key written as 64 hex characters or 52 RFC 4648 base32 characters
 * (no padding, any case).
 *
 * @throws {SyntaxError} neither form, or not a valid Ed25519 point
 */
export function parseKeyText(text: string): Uint8Array {
  let out: Uint8Array;
  if (/^[0-9a-fA-F]{64}$/.test(text)) {
    out = new Uint8Array(KEY_LEN);
    for (let i = 0; i < KEY_LEN; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  } else if (/^[a-zA-Z2-7]{52}$/.test(text)) {
    out = new Uint8Array(KEY_LEN);
    let acc = 0;
    let bits = 0;
    let n = 0;
    for (const ch of text.toLowerCase()) {
      acc = (acc << 5) | BASE32.indexOf(ch);
      bits += 5;
      if (bits >= 8) {
        bits -= 8;
        if (n < KEY_LEN) out[n++] = (acc >>> bits) & 0xff;
      }
      acc &= (1 << bits) - 1;
    }
    // 52 chars carry 260 bits: the 4 spare bits must be zero (canonical form).
    if (acc !== 0) throw new SyntaxError(`Invalid endpoint id "${text}": non-zero padding bits`);
  } else {
    throw new SyntaxError(`Invalid endpoint id "${text}": expected 64 hex or 52 base32 characters`);
  }
  if (!isCurvePoint(out)) throw new SyntaxError(`Invalid endpoint id "${text}": not an Ed25519 public key`);
  return out;
}

/** True if 32 bytes decompress to a curve point (upstream's `PublicKey::from_bytes`). */
function isCurvePoint(key: Uint8Array): boolean {
  try {
    ed25519.Point.fromBytes(key);
    return true;
  } catch {
    return false;
  }
}
