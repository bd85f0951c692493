import assert from "node:assert/strict";
import { blake3 } from "@noble/hashes/blake3";
import { ed25519 } from "@noble/curves/ed25519";
import {
  challengeMessage,
  CLIENT_AUTH_HEADER,
  newChallenge,
  parseClientAuthHeader,
  readPostcardVarint,
  verifyClientAuth,
  verifyClientInfo,
  type VerifyFn,
} from "./handshake.ts";
import { verifyStrict } from "./ed25519.ts";
import type { DerpMsg } from "./codec_derp.ts";
import type { V1Msg } from "./codec_v1.ts";
import { clientAuth, clientInfo } from "../../tests/support/relay_client.ts";
import { concatBytes, hex, K, TEST_SECRET, toHex, utf8 } from "../../tests/support/bytes.ts";

const CHALLENGE = hex("000102030405060708090a0b0c0d0e0f");
const OTHER_SECRET = new Uint8Array(32).fill(0x07);
const FAST_PATH_HEADER =
  "GX9rI-FshTLGq8g4-s1ep4m-DHaykgM0A5v6iz02jWFAQb98VXtFUshaBKOJKabtiBrsmgnPjpFdRpJqAzcy9jOAPc-kOvzLgXjeT9vCG8qx2yO7aDoF4n5vbE4kJbh2CBAREhMUFRYXGBkaGxwdHh8";

Deno.test("blake3 derive_key matches the BLAKE3 test-vector context (spec §3.2 sanity check)", () => {
  const out = blake3(new Uint8Array(0), { context: utf8("BLAKE3 2019-12-27 16:29:52 test vectors context") });
  assert.ok(toHex(out).startsWith("2cc39783c223154f"), toHex(out));
});

Deno.test("challengeMessage() gives the spec's m for challenge 00..0f", () => {
  assert.equal(toHex(challengeMessage(CHALLENGE)), "b7b16e505d2cb5dbaf494800092c3b05a6c45d8d3fd4f1b888c6a77240b876c0");
});

Deno.test("newChallenge() takes 16 bytes from the injected CSPRNG", () => {
  const calls: number[] = [];
  const msg = newChallenge((n) => {
    calls.push(n);
    return CHALLENGE.slice(0, n);
  });
  assert.deepEqual(calls, [16]);
  assert.deepEqual(msg, { type: "ServerChallenge", challenge: CHALLENGE });
});

Deno.test("verifyClientInfo() returns the key and version of a self-signed ClientInfo (test_send_recv_client_key)", async () => {
  const r = await verifyClientInfo(clientInfo(TEST_SECRET), verifyStrict);
  assert.deepEqual(r, { ok: true, key: K, version: 3 });
});

Deno.test("verifyClientInfo() reports a version other than 3 for the caller to refuse after access control", async () => {
  const r = await verifyClientInfo(clientInfo(TEST_SECRET, 4), verifyStrict);
  assert.deepEqual(r, { ok: true, key: K, version: 4 });
});

Deno.test("verifyClientInfo() ignores trailing message bytes after the postcard varint, as upstream", async () => {
  const message = Uint8Array.of(3, 0xff, 0x00);
  const msg: DerpMsg = { type: "ClientInfo", key: K, signature: ed25519.sign(message, TEST_SECRET), message };
  assert.deepEqual(await verifyClientInfo(msg, verifyStrict), { ok: true, key: K, version: 3 });
});

Deno.test("verifyClientInfo() refuses forged, malformed and out-of-order frames without a reply", async (t) => {
  const good = clientInfo(TEST_SECRET) as DerpMsg & { type: "ClientInfo" };
  const notPostcard = Uint8Array.of(0x80);
  const cases: { name: string; msg: DerpMsg }[] = [
    { name: "signed by another key", msg: { ...good, signature: ed25519.sign(good.message, OTHER_SECRET) } },
    { name: "signature over another message", msg: { ...good, message: Uint8Array.of(4) } },
    {
      name: "message that is not postcard",
      msg: { ...good, message: notPostcard, signature: ed25519.sign(notPostcard, TEST_SECRET) },
    },
    { name: "SendPacket first", msg: { type: "SendPacket", dstKey: K, packet: utf8("x") } },
    { name: "Ping first", msg: { type: "Ping", data: new Uint8Array(8) } },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const r = await verifyClientInfo(c.msg, verifyStrict);
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.reply, "close");
    });
  }
});

Deno.test("verifyClientInfo() verifies the message bytes with the embedded key, once", async () => {
  const calls: [string, string, string][] = [];
  const verify: VerifyFn = (k, s, m) => {
    calls.push([toHex(k), toHex(s), toHex(m)]);
    return Promise.resolve(true);
  };
  const info = clientInfo(TEST_SECRET) as DerpMsg & { type: "ClientInfo" };
  await verifyClientInfo(info, verify);
  assert.deepEqual(calls, [[toHex(K), toHex(info.signature), "03"]]);
});

Deno.test("verifyClientAuth() accepts the spec's ClientAuth vector for challenge 00..0f (via_challenge)", async () => {
  const r = await verifyClientAuth(clientAuth(TEST_SECRET, CHALLENGE), CHALLENGE, verifyStrict);
  assert.deepEqual(r, { ok: true, key: K });
});

Deno.test("verifyClientAuth() denies 'signature invalid' to a wrong key or another challenge (with_auth_negative)", async () => {
  const auth = clientAuth(TEST_SECRET, CHALLENGE) as V1Msg & { type: "ClientAuth" };
  const otherChallenge = hex("ff0102030405060708090a0b0c0d0e0f");
  const forged: V1Msg = { ...auth, signature: (clientAuth(OTHER_SECRET, CHALLENGE) as typeof auth).signature };
  for (
    const [name, msg, challenge] of [["another challenge", auth, otherChallenge], [
      "another key's signature",
      forged,
      CHALLENGE,
    ]] as const
  ) {
    const r = await verifyClientAuth(msg, challenge, verifyStrict);
    assert.deepEqual(r, { ok: false, reply: "deny", reason: "signature invalid" }, name);
  }
});

Deno.test("verifyClientAuth() closes without a reply when the first frame is not ClientAuth", async () => {
  const r = await verifyClientAuth({ type: "Ping", data: new Uint8Array(8) }, CHALLENGE, verifyStrict);
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.reply, "close");
});

Deno.test("verifyClientAuth() verifies blake3 derive_key of the challenge, not the raw challenge", async () => {
  const seen: Uint8Array[] = [];
  await verifyClientAuth(clientAuth(TEST_SECRET, CHALLENGE), CHALLENGE, (_k, _s, m) => {
    seen.push(m);
    return Promise.resolve(true);
  });
  assert.deepEqual(seen, [challengeMessage(CHALLENGE)]);
});

Deno.test("parseClientAuthHeader() decodes the spec's fast-path header vector (via_shared_secrets)", async () => {
  assert.equal(CLIENT_AUTH_HEADER, "x-iroh-relay-client-auth-v1");
  assert.equal(FAST_PATH_HEADER.length, 151);
  const km = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  const h = parseClientAuthHeader(FAST_PATH_HEADER);
  assert.deepEqual(h.publicKey, K);
  assert.deepEqual(h.suffix, km.subarray(16));
  // The signature covers km[0..16] directly (no blake3), so it verifies there and not on the challenge path.
  assert.equal(await verifyStrict(h.publicKey, h.signature, km.subarray(0, 16)), true);
  assert.equal(await verifyStrict(h.publicKey, h.signature, challengeMessage(km.subarray(0, 16))), false);
  // And the vector is what our own encoding of the same fields gives.
  const raw = concatBytes(K, Uint8Array.of(0x40), ed25519.sign(km.subarray(0, 16), TEST_SECRET), km.subarray(16));
  assert.equal(raw.toBase64({ alphabet: "base64url", omitPadding: true }), FAST_PATH_HEADER);
});

Deno.test("parseClientAuthHeader() throws SyntaxError on values that are not base64url postcard", () => {
  for (const bad of ["", "!!", "a+b/", FAST_PATH_HEADER.slice(1), FAST_PATH_HEADER + "A", FAST_PATH_HEADER + "=="]) {
    assert.throws(() => parseClientAuthHeader(bad), SyntaxError, bad);
  }
  // Right length but the postcard length byte is not 0x40.
  const raw = Uint8Array.fromBase64(FAST_PATH_HEADER, { alphabet: "base64url" });
  raw[32] = 0x41;
  assert.throws(() => parseClientAuthHeader(raw.toBase64({ alphabet: "base64url", omitPadding: true })), SyntaxError);
});

Deno.test("readPostcardVarint() reads LEB128 and returns null when unterminated", () => {
  assert.equal(readPostcardVarint(Uint8Array.of(3)), 3);
  assert.equal(readPostcardVarint(Uint8Array.of(0x7f, 0xff)), 127);
  assert.equal(readPostcardVarint(Uint8Array.of(0x80, 0x01)), 128);
  assert.equal(readPostcardVarint(Uint8Array.of(0xff, 0xff, 0x03)), 65535);
  assert.equal(readPostcardVarint(new Uint8Array(0)), null);
  assert.equal(readPostcardVarint(Uint8Array.of(0x80)), null);
  assert.equal(readPostcardVarint(new Uint8Array(11).fill(0x80)), null);
});
