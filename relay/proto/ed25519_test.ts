import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519";
import { isCanonicalScalar, verifyStrict } from "./ed25519.ts";
import { concatBytes, hex, K, TEST_SECRET, utf8 } from "../../tests/support/bytes.ts";

/** The group order L. */
const L = ed25519.Point.Fn.ORDER;

function leToBigint(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!);
  return n;
}

function bigintToLe32(n: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

/** The eight small-order points (libsodium's list, canonical encodings). */
const SMALL_ORDER_POINTS = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
  "0000000000000000000000000000000000000000000000000000000000000080",
];

const MSG = utf8("iroh relay");

Deno.test("verifyStrict() accepts a valid signature and rejects a wrong message or key", async () => {
  const sig = ed25519.sign(MSG, TEST_SECRET);
  assert.equal(await verifyStrict(K, sig, MSG), true);
  assert.equal(await verifyStrict(K, sig, utf8("iroh relaz")), false);
  const other = ed25519.getPublicKey(new Uint8Array(32).fill(1));
  assert.equal(await verifyStrict(other, sig, MSG), false);
});

Deno.test("verifyStrict() rejects a non-canonical S (S + L and S = L)", async () => {
  const sig = ed25519.sign(MSG, TEST_SECRET);
  const s = leToBigint(sig.subarray(32));
  const malleated = concatBytes(sig.subarray(0, 32), bigintToLe32(s + L));
  assert.equal(await verifyStrict(K, malleated, MSG), false);
  const sIsL = concatBytes(sig.subarray(0, 32), bigintToLe32(L));
  assert.equal(await verifyStrict(K, sIsL, MSG), false);
});

Deno.test("isCanonicalScalar() is true exactly below L", () => {
  assert.equal(isCanonicalScalar(bigintToLe32(0n)), true);
  assert.equal(isCanonicalScalar(bigintToLe32(L - 1n)), true);
  assert.equal(isCanonicalScalar(bigintToLe32(L)), false);
  assert.equal(isCanonicalScalar(bigintToLe32(L + 1n)), false);
  assert.equal(isCanonicalScalar(new Uint8Array(32).fill(0xff)), false);
});

Deno.test("verifyStrict() rejects small-order public keys, even with a signature that is valid for them", async () => {
  // With A = identity, R = identity, S = 0 satisfies [S]B = R + [k]A for every message.
  const trivialSig = concatBytes(hex(SMALL_ORDER_POINTS[1]!), new Uint8Array(32));
  assert.equal(await verifyStrict(hex(SMALL_ORDER_POINTS[1]!), trivialSig, MSG), false);
  for (const p of SMALL_ORDER_POINTS) {
    const key = hex(p);
    assert.equal(await verifyStrict(key, trivialSig, MSG), false, p);
    assert.equal(await verifyStrict(key, ed25519.sign(MSG, TEST_SECRET), MSG), false, p);
  }
});

Deno.test("verifyStrict() rejects a small-order R that a cofactored verifier would accept", async () => {
  const { scalar: a, pointBytes: A } = ed25519.utils.getExtendedPublicKey(TEST_SECRET);
  for (const p of SMALL_ORDER_POINTS) {
    const R = hex(p);
    const h = new Uint8Array(await crypto.subtle.digest("SHA-512", concatBytes(R, A, MSG)));
    const k = leToBigint(h) % L;
    // [S]B = k·A, so 8·([S]B − R − k·A) = −8·R = 0: the cofactored equation holds.
    const sig = concatBytes(R, bigintToLe32((k * a) % L));
    assert.equal(await verifyStrict(A, sig, MSG), false, p);
  }
});

Deno.test("verifyStrict() rejects non-canonical key encodings (y ≥ p)", async () => {
  const sig = ed25519.sign(MSG, TEST_SECRET);
  for (let low = 0xed; low <= 0xff; low++) {
    const key = concatBytes(Uint8Array.of(low), new Uint8Array(30).fill(0xff), Uint8Array.of(0x7f));
    assert.equal(await verifyStrict(key, sig, MSG), false, low.toString(16));
    key[31] = 0xff;
    assert.equal(await verifyStrict(key, sig, MSG), false, `${low.toString(16)} with sign bit`);
  }
});

Deno.test("verifyStrict() returns false for wrong lengths and non-points instead of throwing", async () => {
  const sig = ed25519.sign(MSG, TEST_SECRET);
  assert.equal(await verifyStrict(K.subarray(0, 31), sig, MSG), false);
  assert.equal(await verifyStrict(K, sig.subarray(0, 63), MSG), false);
  assert.equal(await verifyStrict(K, concatBytes(sig, Uint8Array.of(0)), MSG), false);
  let notPoint: Uint8Array | null = null;
  for (let i = 2; notPoint === null; i++) {
    const c = new Uint8Array(32);
    c[0] = i;
    try {
      ed25519.Point.fromBytes(c);
    } catch {
      notPoint = c;
    }
  }
  assert.equal(await verifyStrict(notPoint, sig, MSG), false);
});
