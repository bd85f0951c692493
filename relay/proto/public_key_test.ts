import { parseKeyText } from "../../config/mod.ts";
import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519";
import {
  isCurvePoint,
  isNonCanonicalPoint,
  isSmallOrder,
  keyBase32,
  keyFromId,
  keyHex,
  keyId,
  keyShort,
  KeyValidityCache,
} from "./public_key.ts";
import { hex, K, K_HEX, Rng } from "../../tests/support/bytes.ts";

const SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

function notAPoint(): Uint8Array {
  for (let i = 2;; i++) {
    const c = new Uint8Array(32);
    c[0] = i;
    try {
      ed25519.Point.fromBytes(c);
    } catch {
      return c;
    }
  }
}

Deno.test("parseKeyText() reads 64 hex characters in either case", () => {
  assert.deepEqual(parseKeyText(K_HEX), K);
  assert.deepEqual(parseKeyText(K_HEX.toUpperCase()), K);
});

Deno.test("parseKeyText() reads 52 base32 characters in either case, and keyBase32() writes them", () => {
  const b32 = keyBase32(K);
  assert.equal(b32.length, 52);
  assert.match(b32, /^[a-z2-7]{52}$/);
  assert.deepEqual(parseKeyText(b32), K);
  assert.deepEqual(parseKeyText(b32.toUpperCase()), K);
  const rng = new Rng(32);
  for (let i = 0; i < 50; i++) {
    const k = ed25519.getPublicKey(rng.bytes(32));
    assert.deepEqual(parseKeyText(keyBase32(k)), k);
    assert.deepEqual(parseKeyText(keyHex(k)), k);
  }
});

Deno.test("parseKeyText() throws SyntaxError on invalid ids", async (t) => {
  const b32 = keyBase32(K);
  const lastValue = "abcdefghijklmnopqrstuvwxyz234567".indexOf(b32[51]!);
  const cases: [string, string][] = [
    ["63 hex characters", K_HEX.slice(1)],
    ["65 hex characters", K_HEX + "0"],
    ["non-hex character", "g" + K_HEX.slice(1)],
    ["0x prefix", "0x" + K_HEX.slice(2)],
    ["51 base32 characters", b32.slice(1)],
    ["53 base32 characters", b32 + "a"],
    ["base32 with 1 and 8", "18" + b32.slice(2)],
    ["base32 with padding", b32.slice(0, 48) + "===="],
    ["base32 with non-zero spare bits", b32.slice(0, 51) + "abcdefghijklmnopqrstuvwxyz234567"[lastValue | 1]],
    ["identity with sign bit", "01000000000000000000000000000000000000000000000000000000000000" + "80"],
    ["not a curve point", keyHex(notAPoint())],
    ["empty", ""],
  ];
  for (const [name, text] of cases) {
    await t.step(name, () => assert.throws(() => parseKeyText(text), SyntaxError));
  }
});

Deno.test("isSmallOrder() matches the small-order points with either sign bit, and nothing else", () => {
  for (const p of SMALL_ORDER) {
    const b = hex(p);
    assert.equal(isSmallOrder(b), true, p);
    b[31] = b[31]! ^ 0x80;
    assert.equal(isSmallOrder(b), true, `${p} sign flipped`);
  }
  assert.equal(isSmallOrder(K), false);
});

Deno.test("isNonCanonicalPoint() is true exactly for y in [p, 2^255)", () => {
  const p = hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
  assert.equal(isNonCanonicalPoint(p), true);
  const below = hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
  assert.equal(isNonCanonicalPoint(below), false);
  const top = new Uint8Array(32).fill(0xff);
  assert.equal(isNonCanonicalPoint(top), true);
  assert.equal(isNonCanonicalPoint(K), false);
});

Deno.test("isCurvePoint() accepts keys and weak points as upstream decodes them, refuses off-curve bytes", () => {
  assert.equal(isCurvePoint(K), true);
  // Weak points are still points: upstream decodes them and lets verify_strict refuse them.
  for (const p of SMALL_ORDER.slice(0, 5)) assert.equal(isCurvePoint(hex(p)), true, p);
  assert.equal(isCurvePoint(notAPoint()), false);
  assert.equal(isCurvePoint(K.subarray(0, 31)), false);
});

Deno.test("parseKeyText() accepts a small-order key, as upstream's parser does", () => {
  assert.deepEqual(parseKeyText(SMALL_ORDER[1]!), hex(SMALL_ORDER[1]!));
});

Deno.test("keyId() and keyFromId() round-trip; keyHex() and keyShort() format", () => {
  const id = keyId(K);
  assert.equal(id.length, 32);
  assert.deepEqual(keyFromId(id), K);
  assert.equal(keyHex(K), K_HEX);
  assert.equal(keyShort(K), K_HEX.slice(0, 10));
  assert.notEqual(keyId(K), keyId(hex(SMALL_ORDER[0]!)));
});

Deno.test("KeyValidityCache remembers answers, both ways, up to its capacity (oldest evicted)", () => {
  const bad = notAPoint();
  const cache = new KeyValidityCache(2);
  assert.equal(cache.isValid(keyId(K), K), true);
  assert.equal(cache.isValid(keyId(bad), bad), false);
  // A cached answer is returned without looking at the bytes again.
  assert.equal(cache.isValid(keyId(K), bad), true);
  const third = ed25519.getPublicKey(new Uint8Array(32).fill(3));
  assert.equal(cache.isValid(keyId(third), third), true);
  // K was the oldest and is gone: the bytes are checked again.
  assert.equal(cache.isValid(keyId(K), bad), false);
  const off = new KeyValidityCache(0);
  assert.equal(off.isValid(keyId(K), K), true);
  assert.equal(off.isValid(keyId(K), bad), false, "capacity 0 caches nothing");
});
