/**
 * The test clients' codec (`wire.ts`) against the spec's byte vectors
 * (`iroh-relay-protocol.md` §2.4 and §3.2) and RFC 6455 §5.7's examples:
 * the shared truth between it and the relay's own codec.
 */

import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519";
import {
  challengeMessage,
  decodeDerp,
  decodeV1,
  DerpStreamReader,
  encodeDerp,
  encodeDerpWs,
  encodeV1,
  encodeWsFrame,
  WsStreamReader,
} from "./wire.ts";

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const K_HEX = "197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61";
const K = hex(K_HEX);
const SECRET = new Uint8Array(32).fill(0x2a);
const text = (s: string) => new TextEncoder().encode(s);

Deno.test("wire: the spec's key pair", () => {
  assert.equal(toHex(ed25519.getPublicKey(SECRET)), K_HEX);
});

Deno.test("wire: 0.35 vectors (§2.4) encode and decode", () => {
  const sig = hex(
    "88e77b22f292ab37435da8de0bc8cb84e288f4e73b3582a52731e9ff9865465c87e05e8d427df422bb6e85e1c05f6f749837baa4a5c7eba3230d77569910430e",
  );
  const info = { type: "ClientInfo" as const, key: K, signature: sig, message: Uint8Array.of(3) };
  assert.equal(toHex(encodeDerpWs(info)), `02${"52454c4159f09f9491"}${K_HEX}${toHex(sig)}03`);
  assert.equal(encodeDerpWs(info).length, 107);
  assert.equal(toHex(encodeDerp(info)).slice(0, 10), "020000006a");
  assert.equal(toHex(ed25519.sign(Uint8Array.of(3), SECRET)), toHex(sig));
  const send = { type: "SendPacket" as const, dstKey: K, packet: text("Goodbye!") };
  assert.equal(toHex(encodeDerp(send)), `0400000028${K_HEX}476f6f6462796521`);
  assert.equal(toHex(encodeDerpWs(send)), `04${K_HEX}476f6f6462796521`);
  assert.deepEqual(decodeDerp(5, hex(`${K_HEX}48656c6c6f20576f726c6421`)), {
    type: "RecvPacket",
    srcKey: K,
    packet: text("Hello World!"),
  });
  assert.equal(toHex(encodeDerp({ type: "Ping", data: new Uint8Array(8).fill(0x2a) })), "0c000000082a2a2a2a2a2a2a2a");
  assert.equal(toHex(encodeDerp({ type: "KeepAlive" })), "0600000000");
  assert.equal(
    toHex(encodeDerp({ type: "Health", problem: "not authenticated" })),
    "0e000000116e6f742061757468656e74696361746564",
  );
  assert.equal(toHex(encodeDerp({ type: "PeerGone", key: K })), `0800000020${K_HEX}`);
  assert.throws(() => decodeDerp(8, K.subarray(1)), RangeError);
  assert.throws(() => decodeDerp(99, new Uint8Array(0)), RangeError);
});

Deno.test("wire: derp stream reader cuts frames across chunk boundaries", () => {
  const r = new DerpStreamReader();
  const bytes = hex(`0c000000082a2a2a2a2a2a2a2a 0600000000 0800000020${K_HEX}`);
  const got: number[] = [];
  for (let i = 0; i < bytes.length; i += 3) {
    r.push(bytes.subarray(i, i + 3));
    for (let f = r.next(); f !== null; f = r.next()) got.push(f.type);
  }
  assert.deepEqual(got, [12, 6, 8]);
});

Deno.test("wire: 1.x vectors (§2.4, §3.2) encode and decode", () => {
  const hello = text("Hello World!");
  assert.equal(
    toHex(encodeV1({ type: "ClientToRelayDatagram", dstKey: K, ecn: 3, contents: hello })),
    `04${K_HEX}0348656c6c6f20576f726c6421`,
  );
  assert.equal(
    toHex(encodeV1({ type: "ClientToRelayDatagramBatch", dstKey: K, ecn: 3, segmentSize: 6, contents: hello })),
    `05${K_HEX}03000648656c6c6f20576f726c6421`,
  );
  assert.deepEqual(decodeV1(hex(`07${K_HEX}03000648656c6c6f20576f726c6421`), 2), {
    type: "RelayToClientDatagramBatch",
    srcKey: K,
    ecn: 3,
    segmentSize: 6,
    contents: hello,
  });
  assert.deepEqual(decodeV1(hex("0d01"), 2), { type: "Status", status: 1 });
  assert.throws(() => decodeV1(hex("0d01"), 1), RangeError);
  assert.deepEqual(decodeV1(hex("0c0000000a00000014"), 2), { type: "Restarting", reconnectInMs: 10, tryForMs: 20 });
  assert.deepEqual(decodeV1(hex("030e6e6f7420617574686f72697a6564"), 2), {
    type: "ServerDeniesAuth",
    reason: "not authorized",
  });
  assert.deepEqual(decodeV1(hex("02"), 1), { type: "ServerConfirmsAuth" });
  const challenge = hex("000102030405060708090a0b0c0d0e0f");
  assert.equal(
    toHex(challengeMessage(challenge)),
    "b7b16e505d2cb5dbaf494800092c3b05a6c45d8d3fd4f1b888c6a77240b876c0",
  );
  const auth = encodeV1({
    type: "ClientAuth",
    publicKey: K,
    signature: ed25519.sign(challengeMessage(challenge), SECRET),
  });
  assert.equal(
    toHex(auth),
    `01${K_HEX}40a28b5ebc6a930b5d80ad5aca2a8e48ad4a064e699c0866674c8b8e61a5f4ea940ee8b9f06732930250ac0735555abe77e8df740165edc3163be432f0e4f3cf0f`,
  );
});

Deno.test("wire: WebSocket frames as RFC 6455 §5.7 shows them, and reassembly", () => {
  // "Hello", unmasked and masked with 37 fa 21 3d.
  assert.equal(toHex(encodeWsFrame(1, text("Hello"))), "810548656c6c6f");
  assert.equal(toHex(encodeWsFrame(1, text("Hello"), hex("37fa213d"))), "818537fa213d7f9f4d5158");
  const r = new WsStreamReader();
  // Fragmented unmasked text "Hel" + "lo", a ping between, then 256 bytes in one binary frame.
  r.push(hex("010348656c 8900 80026c6f 827e0100"));
  r.push(new Uint8Array(256).fill(7));
  assert.deepEqual(r.next(), { kind: "ping", data: new Uint8Array(0) });
  assert.deepEqual(r.next(), { kind: "message", binary: false, data: text("Hello") });
  const big = r.next();
  assert.equal(big?.kind, "message");
  assert.equal(big?.kind === "message" && big.data.length, 256);
  assert.equal(r.next(), null);
  r.push(hex("8802 03e8"));
  assert.deepEqual(r.next(), { kind: "close", code: 1000, reason: "" });
});
