import assert from "node:assert/strict";
import {
  CLIENT_AUTH_LEN,
  decodeV1,
  decodeV1Payload,
  encodeV1,
  readV1Type,
  type V1Msg,
  v1PayloadLen,
} from "./codec_v1.ts";
import { MAX_PACKET_SIZE, V1Frame } from "./frame_type.ts";
import { clientAuth } from "../../tests/support/relay_client.ts";
import {
  assertOnlyThrows,
  concatBytes,
  hex,
  K,
  K_HEX,
  perturb,
  Rng,
  TEST_SECRET,
  utf8,
} from "../../tests/support/bytes.ts";

const HELLO = "48656c6c6f20576f726c6421"; // "Hello World!"
const CHALLENGE = hex("000102030405060708090a0b0c0d0e0f");

/**
 * Spec §2.4 (1.x frames) and §3.2 (handshake frames). `versions` lists the
 * subprotocols the frame belongs to.
 */
const VECTORS: { name: string; msg: V1Msg; bytes: string; versions: (1 | 2)[] }[] = [
  {
    name: "ClientToRelayDatagram (ECN CE)",
    msg: { type: "ClientToRelayDatagram", dstKey: K, ecn: 3, contents: utf8("Hello World!") },
    bytes: `04 ${K_HEX} 03 ${HELLO}`,
    versions: [1, 2],
  },
  {
    name: "ClientToRelayDatagramBatch (segment 6)",
    msg: { type: "ClientToRelayDatagramBatch", dstKey: K, ecn: 3, segmentSize: 6, contents: utf8("Hello World!") },
    bytes: `05 ${K_HEX} 03 0006 ${HELLO}`,
    versions: [1, 2],
  },
  {
    name: "RelayToClientDatagram",
    msg: { type: "RelayToClientDatagram", srcKey: K, ecn: 3, contents: utf8("Hello World!") },
    bytes: `06 ${K_HEX} 03 ${HELLO}`,
    versions: [1, 2],
  },
  {
    name: "RelayToClientDatagramBatch",
    msg: { type: "RelayToClientDatagramBatch", srcKey: K, ecn: 3, segmentSize: 6, contents: utf8("Hello World!") },
    bytes: `07 ${K_HEX} 03 0006 ${HELLO}`,
    versions: [1, 2],
  },
  {
    name: "Ping",
    msg: { type: "Ping", data: new Uint8Array(8).fill(0x2a) },
    bytes: "09 2a2a2a2a2a2a2a2a",
    versions: [1, 2],
  },
  {
    name: "Pong",
    msg: { type: "Pong", data: new Uint8Array(8).fill(0x2a) },
    bytes: "0a 2a2a2a2a2a2a2a2a",
    versions: [1, 2],
  },
  { name: "EndpointGone", msg: { type: "EndpointGone", key: K }, bytes: `08 ${K_HEX}`, versions: [1, 2] },
  { name: "Status(SameEndpointIdConnected)", msg: { type: "Status", status: 1 }, bytes: "0d 01", versions: [2] },
  { name: "Status(Healthy)", msg: { type: "Status", status: 0 }, bytes: "0d 00", versions: [2] },
  {
    name: "Restarting(10 ms, 20 ms)",
    msg: { type: "Restarting", reconnectInMs: 10, tryForMs: 20 },
    bytes: "0c 0000000a 00000014",
    versions: [1, 2],
  },
  {
    name: "Health",
    msg: { type: "Health", problem: "Hello? Yes this is dog." },
    bytes: "0b 48656c6c6f3f20596573207468697320697320646f672e",
    versions: [1],
  },
  {
    name: "ServerChallenge",
    msg: { type: "ServerChallenge", challenge: CHALLENGE },
    bytes: "00 000102030405060708090a0b0c0d0e0f",
    versions: [1, 2],
  },
  {
    name: "ClientAuth",
    msg: clientAuth(TEST_SECRET, CHALLENGE),
    bytes: `01 ${K_HEX} 40
      a28b5ebc6a930b5d80ad5aca2a8e48ad4a064e699c0866674c8b8e61a5f4ea940ee8b9f06732930250ac0735555abe77e8df740165edc3163be432f0e4f3cf0f`,
    versions: [1, 2],
  },
  { name: "ServerConfirmsAuth", msg: { type: "ServerConfirmsAuth" }, bytes: "02", versions: [1, 2] },
  {
    name: "ServerDeniesAuth(not authorized)",
    msg: { type: "ServerDeniesAuth", reason: "not authorized" },
    bytes: "03 0e 6e6f7420617574686f72697a6564",
    versions: [1, 2],
  },
];

for (const v of VECTORS) {
  for (const version of v.versions) {
    Deno.test(`encodeV1() gives the spec vector for ${v.name} (v${version})`, () => {
      const b = encodeV1(v.msg, version);
      assert.deepEqual(b, hex(v.bytes));
      assert.equal(b.length, 1 + v1PayloadLen(v.msg), "encoded length is exact");
    });
    Deno.test(`decodeV1() gives the message of the spec vector for ${v.name} (v${version})`, () => {
      assert.deepEqual(decodeV1(hex(v.bytes), version), v.msg);
    });
  }
}

Deno.test("the ClientAuth vector is 98 bytes (type + 97)", () => {
  assert.equal(hex(VECTORS.find((v) => v.name === "ClientAuth")!.bytes).length, 98);
  assert.equal(CLIENT_AUTH_LEN, 97);
});

Deno.test("decodeV1() rejects Health in v2 (v1health_rejected_in_v2)", () => {
  const b = hex("0b 48656c6c6f");
  assert.throws(() => decodeV1(b, 2), SyntaxError);
  assert.throws(() => encodeV1({ type: "Health", problem: "Hello" }, 2), SyntaxError);
  assert.equal(decodeV1(b, 1).type, "Health");
});

Deno.test("decodeV1() rejects Status in v1 (status_rejected_in_v1)", () => {
  assert.throws(() => decodeV1(hex("0d 01"), 1), SyntaxError);
  assert.throws(() => encodeV1({ type: "Status", status: 1 }, 1), SyntaxError);
  assert.deepEqual(decodeV1(hex("0d 01"), 2), { type: "Status", status: 1 });
});

Deno.test("decodeV1() rejects an undersized datagram (regression_client_to_relay_undersized_datagram_rejected)", () => {
  for (const version of [1, 2] as const) {
    assert.throws(() => decodeV1(hex("04"), version), SyntaxError);
    assert.throws(() => decodeV1(hex(`04 ${K_HEX}`), version), SyntaxError, "key but no ECN byte");
    assert.throws(() => decodeV1(hex(`05 ${K_HEX} 03 00`), version), SyntaxError, "batch missing a segment byte");
    assert.throws(() => decodeV1(hex("06 00"), version), SyntaxError);
    assert.throws(() => decodeV1(hex(`07 ${K_HEX} 03`), version), SyntaxError);
  }
});

Deno.test("decodeV1() accepts a datagram with empty contents (the minimum of 33 bytes after the type)", () => {
  const m = decodeV1(hex(`04 ${K_HEX} 00`), 2);
  assert.deepEqual(m, { type: "ClientToRelayDatagram", dstKey: K, ecn: 0, contents: new Uint8Array(0) });
});

Deno.test("decodeV1() reads a batch with segment size 0 as a plain datagram", () => {
  assert.deepEqual(decodeV1(hex(`05 ${K_HEX} 02 0000 ${HELLO}`), 2), {
    type: "ClientToRelayDatagram",
    dstKey: K,
    ecn: 2,
    contents: utf8("Hello World!"),
  });
  assert.deepEqual(decodeV1(hex(`07 ${K_HEX} 01 0000 ${HELLO}`), 1), {
    type: "RelayToClientDatagram",
    srcKey: K,
    ecn: 1,
    contents: utf8("Hello World!"),
  });
});

Deno.test("decodeV1() keeps only the low 2 ECN bits, and encodeV1() drops the upper bits", () => {
  const m = decodeV1(hex(`04 ${K_HEX} ff ${HELLO}`), 2) as { ecn: number };
  assert.equal(m.ecn, 3);
  const b = encodeV1({ type: "ClientToRelayDatagram", dstKey: K, ecn: 0xfd, contents: utf8("x") }, 2);
  assert.equal(b[33], 1);
});

Deno.test("decodeV1() allows 65536 bytes after the type and rejects 65537 with RangeError", () => {
  const ok = concatBytes(Uint8Array.of(4), K, Uint8Array.of(0), new Uint8Array(MAX_PACKET_SIZE - 33));
  assert.equal(decodeV1(ok, 2).type, "ClientToRelayDatagram");
  const tooBig = concatBytes(ok, Uint8Array.of(0));
  assert.throws(() => decodeV1(tooBig, 2), RangeError);
  assert.throws(() => decodeV1Payload(V1Frame.Ping, new Uint8Array(MAX_PACKET_SIZE + 1), 1), RangeError);
});

Deno.test("decodeV1() rejects malformed frames with SyntaxError", async (t) => {
  const cases: { name: string; bytes: Uint8Array; version?: 1 | 2 }[] = [
    { name: "empty message", bytes: new Uint8Array(0) },
    { name: "unknown type 14", bytes: hex("0e") },
    { name: "unknown type 63", bytes: hex("3f 00") },
    { name: "unknown two-byte varint type 64", bytes: hex("4040") },
    { name: "truncated two-byte varint", bytes: hex("40") },
    { name: "truncated four-byte varint", bytes: hex("800000") },
    { name: "truncated eight-byte varint", bytes: hex("c0000000000000") },
    { name: "ServerChallenge 15 bytes", bytes: hex("00 000102030405060708090a0b0c0d0e") },
    { name: "ServerChallenge 17 bytes", bytes: hex("00 000102030405060708090a0b0c0d0e0f10") },
    { name: "ClientAuth 96 bytes", bytes: concatBytes(Uint8Array.of(1), K, Uint8Array.of(0x40), new Uint8Array(63)) },
    {
      name: "ClientAuth with length byte 0x3f",
      bytes: concatBytes(Uint8Array.of(1), K, Uint8Array.of(0x3f), new Uint8Array(64)),
    },
    { name: "ServerConfirmsAuth with a byte", bytes: hex("02 00") },
    { name: "ServerDeniesAuth empty", bytes: hex("03") },
    { name: "ServerDeniesAuth length past the end", bytes: hex("03 05 6e6f") },
    { name: "ServerDeniesAuth trailing byte", bytes: hex("03 01 6e 6f") },
    { name: "ServerDeniesAuth unterminated varint", bytes: hex("03 80 80 80 80 80 80") },
    { name: "ServerDeniesAuth invalid UTF-8", bytes: hex("03 02 ff fe") },
    { name: "EndpointGone 31 bytes", bytes: concatBytes(Uint8Array.of(8), new Uint8Array(31)) },
    { name: "Ping 7 bytes", bytes: hex("09 00000000000000") },
    { name: "Pong 9 bytes", bytes: hex("0a 000000000000000000") },
    { name: "Restarting 4 bytes", bytes: hex("0c 00000000") },
    { name: "Status empty", bytes: hex("0d"), version: 2 },
    { name: "Status 2 bytes", bytes: hex("0d 0001"), version: 2 },
    { name: "Health invalid UTF-8", bytes: hex("0b c3"), version: 1 },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      for (const version of c.version ? [c.version] : [1, 2] as const) {
        assert.throws(() => decodeV1(c.bytes, version), SyntaxError);
      }
    });
  }
});

Deno.test("readV1Type() reads QUIC varints of every length", () => {
  assert.deepEqual(readV1Type(hex("04 ff")), { type: 4, offset: 1 });
  assert.deepEqual(readV1Type(hex("4004")), { type: 4, offset: 2 });
  assert.deepEqual(readV1Type(hex("80000004")), { type: 4, offset: 4 });
  assert.deepEqual(readV1Type(hex("c000000000000004")), { type: 4, offset: 8 });
  assert.deepEqual(readV1Type(hex("7fff")), { type: 0x3fff, offset: 2 });
});

Deno.test("decodeV1() accepts a non-minimal varint type (decoders accept any varint length)", () => {
  assert.deepEqual(decodeV1(hex("4009 2a2a2a2a2a2a2a2a"), 2), { type: "Ping", data: new Uint8Array(8).fill(0x2a) });
});

Deno.test("encodeV1() and decodeV1() round-trip ServerDeniesAuth reasons longer than 127 bytes", () => {
  for (const reason of ["", "x".repeat(127), "y".repeat(128), "ü".repeat(300)]) {
    const b = encodeV1({ type: "ServerDeniesAuth", reason }, 2);
    assert.equal(b.length, 1 + v1PayloadLen({ type: "ServerDeniesAuth", reason }));
    assert.deepEqual(decodeV1(b, 2), { type: "ServerDeniesAuth", reason });
  }
});

Deno.test("decodeV1() round-trips random datagrams (proptest roundtrip, seeded)", () => {
  const rng = new Rng(0x1_0003);
  for (let i = 0; i < 500; i++) {
    const key = rng.bytes(32);
    const contents = rng.bytes(rng.int(2000));
    const ecn = rng.int(4);
    const segmentSize = 1 + rng.int(0xffff);
    const msgs: V1Msg[] = [
      { type: "ClientToRelayDatagram", dstKey: key, ecn, contents },
      { type: "ClientToRelayDatagramBatch", dstKey: key, ecn, segmentSize, contents },
      { type: "RelayToClientDatagram", srcKey: key, ecn, contents },
      { type: "RelayToClientDatagramBatch", srcKey: key, ecn, segmentSize, contents },
      { type: "Ping", data: rng.bytes(8) },
      { type: "ServerDeniesAuth", reason: "r".repeat(rng.int(300)) },
    ];
    for (const m of msgs) {
      const b = encodeV1(m, 2);
      assert.equal(b.length, 1 + v1PayloadLen(m));
      assert.deepEqual(decodeV1(b, 2), m);
    }
  }
});

Deno.test("decodeV1() only throws SyntaxError or RangeError on perturbed vectors (seeded fuzz)", () => {
  const rng = new Rng(0x1_0001);
  const bases = VECTORS.map((v) => hex(v.bytes));
  for (let i = 0; i < 20_000; i++) {
    const b = perturb(rng, rng.pick(bases));
    const version = rng.int(2) === 0 ? 1 : 2;
    assertOnlyThrows(() => decodeV1(b, version), [SyntaxError, RangeError], `seed 0x10001 iteration ${i}`);
  }
});

Deno.test("decodeV1() only throws SyntaxError or RangeError on random bytes (seeded fuzz)", () => {
  const rng = new Rng(0x1_0002);
  for (let i = 0; i < 20_000; i++) {
    const b = rng.bytes(rng.int(120));
    if (b.length > 0 && rng.int(2) === 0) b[0] = rng.int(16);
    assertOnlyThrows(
      () => decodeV1(b, rng.int(2) === 0 ? 1 : 2),
      [SyntaxError, RangeError],
      `seed 0x10002 iteration ${i}`,
    );
  }
});
