import assert from "node:assert/strict";
import { isCurvePoint, verifyStrict } from "../../relay/mod.ts";
import { irohTxt, relayPayload, testKey } from "../../tests/support/pkarr_packet.ts";
import { isNewer, MAX_RELAY_PAYLOAD, packetFromBytes, parseRelayPayload, signable } from "./signed_packet.ts";
import { VECTOR, vectorPayload } from "./testdata.ts";
import { z32Decode, z32DecodeKey, z32Encode } from "./z32.ts";
import { hex, toHex } from "../../tests/support/bytes.ts";

const verifier = { isValidKey: isCurvePoint, verify: verifyStrict };

Deno.test("z32Encode()/z32Decode() match iroh's test pair and the §1.8 key", () => {
  const k = hex("1992d53c02cdc04566e5c0edb1ce83305cd550297953a047a445ea3264b54b18");
  assert.equal(z32Encode(k), "dgjpkxyn3zyrk3zfads5duwdgbqpkwbjxfj4yt7rezidr3fijccy");
  assert.deepEqual(z32DecodeKey("dgjpkxyn3zyrk3zfads5duwdgbqpkwbjxfj4yt7rezidr3fijccy"), k);
  assert.equal(z32Encode(VECTOR.pubkey), VECTOR.z32);
});

Deno.test("z32Decode() is strict: uppercase, bad characters, non-zero trailing bits and odd lengths fail", () => {
  assert.equal(z32DecodeKey(VECTOR.z32.toUpperCase()), null);
  assert.equal(z32DecodeKey(VECTOR.z32.slice(0, 51) + "l"), null); // 'l' is not in the alphabet
  assert.equal(z32DecodeKey(VECTOR.z32.slice(0, 51) + "n"), null); // trailing bits set
  assert.equal(z32DecodeKey(VECTOR.z32.slice(0, 50)), null);
  assert.equal(z32Decode("y"), null); // 5 bits make no byte
  for (let n = 0; n < 40; n++) {
    const b = crypto.getRandomValues(new Uint8Array(n));
    assert.deepEqual(z32Decode(z32Encode(b)), b);
  }
});

Deno.test("signable() and parseRelayPayload() accept the §1.8 worked vector", async () => {
  const s = signable(VECTOR.ts, VECTOR.dns);
  assert.equal(new TextDecoder().decode(s.subarray(0, 30)), "3:seqi1700000000000000e1:v170:");
  const body = vectorPayload();
  assert.equal(body.length, 242);
  const p = await parseRelayPayload(VECTOR.pubkey, body, verifier);
  assert.equal(p.ts, VECTOR.ts);
  assert.equal(p.bytes.length, 274);
  assert.equal(toHex(p.dns), toHex(VECTOR.dns));
  assert.deepEqual(packetFromBytes(p.bytes), p);
});

Deno.test("parseRelayPayload() refuses forged, foreign, oversize, short and garbage payloads", async () => {
  const body = vectorPayload();
  const forged = body.slice();
  forged[100] = forged[100]! ^ 1; // a byte of the DNS part: the signature no longer matches
  await assert.rejects(parseRelayPayload(VECTOR.pubkey, forged, verifier), {
    name: "PacketError",
    message: /signature/,
  });
  const other = testKey();
  await assert.rejects(parseRelayPayload(other.pub, body, verifier), /signature/);
  await assert.rejects(parseRelayPayload(VECTOR.pubkey, body.subarray(0, 71), verifier), /at least 72/);
  const big = testKey();
  const dns = irohTxt(big, Array.from({ length: 40 }, (_, i) => `addr=10.0.0.${i}:12345`));
  assert.ok(dns.length > 1000);
  const oversize = relayPayload(big, 1n, dns);
  assert.ok(oversize.length > MAX_RELAY_PAYLOAD);
  await assert.rejects(parseRelayPayload(big.pub, oversize, verifier), /more than the 1000/);
  // A valid signature over bytes that are not a DNS message.
  const garbage = relayPayload(big, 5n, new TextEncoder().encode("not a dns message at all"));
  await assert.rejects(parseRelayPayload(big.pub, garbage, verifier), /does not parse/);
  // Not a curve point (y = 2 does not decompress).
  const notPoint = new Uint8Array(32);
  notPoint[0] = 2;
  await assert.rejects(parseRelayPayload(notPoint, body, verifier), /public key/);
});

Deno.test("isNewer(): higher timestamp wins, then greater DNS bytes; equal is not newer", async () => {
  const k = testKey();
  const a = await parseRelayPayload(k.pub, relayPayload(k, 10n, irohTxt(k, ["relay=https://a/"])), verifier);
  const b = await parseRelayPayload(k.pub, relayPayload(k, 11n, irohTxt(k, ["relay=https://a/"])), verifier);
  const c = await parseRelayPayload(k.pub, relayPayload(k, 10n, irohTxt(k, ["relay=https://b/"])), verifier);
  assert.ok(isNewer(b, a) && !isNewer(a, b));
  assert.ok(isNewer(c, a) && !isNewer(a, c));
  assert.ok(!isNewer(a, a));
});
