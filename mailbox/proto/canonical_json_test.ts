import assert from "node:assert/strict";
import { createPrivateKey, sign } from "node:crypto";
import { canonicalJson, compareCodePoints, JsonNumber, JsonSyntaxError, parseJson } from "./canonical_json.ts";
import { decodeBase64, encodeUnpaddedBase64 } from "./base64.ts";

const canon = (text: string) => canonicalJson(parseJson(text));

Deno.test("canonicalJson() matches every example of the spec appendix (Canonical JSON)", () => {
  assert.equal(canon("{}"), "{}");
  assert.equal(canon('{\n    "one": 1,\n    "two": "Two"\n}'), '{"one":1,"two":"Two"}');
  assert.equal(canon('{\n    "b": "2",\n    "a": "1"\n}'), '{"a":"1","b":"2"}');
  assert.equal(canon('{"b":"2","a":"1"}'), '{"a":"1","b":"2"}');
  assert.equal(
    canon(`{
      "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
          "display_name": "John Doe",
          "three_pids": [
            { "medium": "email", "address": "john.doe@example.org" },
            { "medium": "msisdn", "address": "123456789" }
          ]
        }
      }
    }`),
    '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}',
  );
  assert.equal(canon('{\n    "a": "日本語"\n}'), '{"a":"日本語"}');
  assert.equal(canon('{\n    "本": 2,\n    "日": 1\n}'), '{"日":1,"本":2}');
  assert.equal(canon('{\n    "a": "\\u65E5"\n}'), '{"a":"日"}');
  assert.equal(canon('{\n    "a": null\n}'), '{"a":null}');
  assert.equal(canon('{\n    "a": -0,\n    "b": 1e10\n}'), '{"a":0,"b":10000000000}');
});

Deno.test("canonicalJson() escapes only what the grammar requires and sorts by code point, not UTF-16 unit", () => {
  assert.equal(canon('"\\u0001\\b\\f\\n\\r\\t\\"\\\\\\/\\u001f"'), '"\\u0001\\b\\f\\n\\r\\t\\"\\\\/\\u001f"');
  // U+FF61 sorts before U+1F600 by code point, after it by UTF-16 unit (0xD83D).
  assert.equal(canon('{"😀":1,"｡":2}'), '{"｡":2,"😀":1}');
  assert.ok(compareCodePoints("｡", "😀") < 0);
  assert.ok(compareCodePoints("a", "ab") < 0);
  // Number literals outside the safe range are kept as written, not rounded by a double.
  assert.equal(canon("[12345678901234567890,1.5,-0.0,2E2]"), "[12345678901234567890,1.5,0,200]");
  assert.equal(
    canonicalJson({ b: [1, true, null], a: new JsonNumber("7"), c: undefined }),
    '{"a":7,"b":[1,true,null]}',
  );
  assert.throws(() => canonicalJson(1.5), RangeError);
});

Deno.test("parseJson() refuses malformed, duplicate-key, trailing and too-deep input with a SyntaxError", () => {
  for (
    const bad of [
      "",
      "{",
      '{"a":1,}',
      '{"a" 1}',
      "[1 2]",
      '{"a":1}x',
      '{"a":1,"a":2}',
      '"\\x"',
      '"\\u12"',
      '"a\nb"',
      "01",
      "+1",
      "1.",
      "NaN",
      "tru",
      "'a'",
    ]
  ) {
    assert.throws(() => parseJson(bad), JsonSyntaxError, `should refuse ${JSON.stringify(bad)}`);
  }
  assert.throws(() => parseJson("[".repeat(65) + "]".repeat(65)), /Nested deeper than 64/);
  assert.doesNotThrow(() => parseJson("[".repeat(64) + "]".repeat(64)));
  const o = parseJson('{"__proto__":{"x":1}}') as Map<string, unknown>;
  assert.ok(o.has("__proto__"));
  assert.equal(canonicalJson(parseJson('{"__proto__":1}')), '{"__proto__":1}');
});

Deno.test("parseJson() + canonicalJson() agree with JSON.parse on random documents (seeded)", () => {
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const gen = (d: number): unknown => {
    switch (rnd(d > 3 ? 4 : 7)) {
      case 0:
        return rnd(2000) - 1000;
      case 1:
        return String.fromCodePoint(
          ...Array.from({ length: rnd(5) }, () => [0x41, 0xe9, 0x65e5, 0x1f600, 0x0a][rnd(5)]!),
        );
      case 2:
        return rnd(2) === 0;
      case 3:
        return null;
      case 4:
      case 5:
        return Array.from({ length: rnd(4) }, () => gen(d + 1));
      default:
        return Object.fromEntries(Array.from({ length: rnd(4) }, () => [`k${rnd(50)}é`, gen(d + 1)]));
    }
  };
  for (let k = 0; k < 500; k++) {
    const v = gen(0);
    const text = JSON.stringify(v, null, rnd(3));
    const c = canon(text);
    assert.deepEqual(JSON.parse(c), JSON.parse(text));
    assert.equal(canon(c), c, "canonical form is a fixed point");
  }
});

// Spec appendices, "Cryptographic test vectors": the test key's seed and key id,
// and the signatures of {} and {"one":1,"two":"Two"} by entity "domain".
const SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";

function signWithSeed(seed: Uint8Array, message: string): string {
  const der = new Uint8Array([
    0x30,
    0x2e,
    0x02,
    0x01,
    0x00,
    0x30,
    0x05,
    0x06,
    0x03,
    0x2b,
    0x65,
    0x70,
    0x04,
    0x22,
    0x04,
    0x20,
    ...seed,
  ]);
  const key = createPrivateKey({ key: Buffer.from(der), format: "der", type: "pkcs8" });
  return encodeUnpaddedBase64(new Uint8Array(sign(null, new TextEncoder().encode(message), key)));
}

Deno.test("canonical JSON + unpadded Base64 reproduce the spec's signing test vectors", () => {
  const seed = decodeBase64(SPEC_SEED)!;
  assert.equal(seed.length, 32);
  assert.equal(
    signWithSeed(seed, canon("{}")),
    "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ",
  );
  assert.equal(
    signWithSeed(seed, canon('{ "two": "Two", "one": 1 }')),
    "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw",
  );
});

Deno.test("unpadded Base64 matches the spec's examples and refuses what is not Base64", () => {
  const cases: [string, string][] = [["", ""], ["f", "Zg"], ["fo", "Zm8"], ["foo", "Zm9v"], ["foob", "Zm9vYg"], [
    "fooba",
    "Zm9vYmE",
  ], ["foobar", "Zm9vYmFy"]];
  for (const [plain, b64] of cases) {
    assert.equal(encodeUnpaddedBase64(new TextEncoder().encode(plain)), b64);
    assert.equal(new TextDecoder().decode(decodeBase64(b64)!), plain);
  }
  assert.equal(new TextDecoder().decode(decodeBase64("Zm8=")!), "fo", "padding accepted, as the spec asks");
  assert.equal(new TextDecoder().decode(decodeBase64("Zg==")!), "f");
  for (const bad of ["Z", "Zm9v!", "Zm-_", "Zm 9v", "Zm8==", "é"]) assert.equal(decodeBase64(bad), null, bad);
  // Trailing bits are ignored: the spec's test seed ends in "1", whose low 2 bits are set.
  assert.deepEqual(decodeBase64("Zh"), decodeBase64("Zg"));
});
