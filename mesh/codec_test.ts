import assert from "node:assert/strict";
import {
  decodeMesh,
  dispatchMesh,
  encodeMeshClaimed,
  encodeMeshDatagram,
  encodeMeshGone,
  frameMessages,
  MESH_DATAGRAM_HEADER_LEN,
  type MeshMsg,
  unframeMessages,
  writeMeshDatagram,
} from "./codec.ts";
import type { MeshSink } from "../relay/mod.ts";
import { assertOnlyThrows, hex, K, K_HEX, perturb, Rng, toHex, utf8 } from "../tests/support/bytes.ts";

const K2 = new Uint8Array(32).fill(0xab);
const K2_HEX = "ab".repeat(32);
const HELLO = "48656c6c6f20576f726c6421"; // "Hello World!"

/** Annotated vectors: the layout in `codec.ts`'s module doc, byte for byte. */
const VECTORS: { name: string; bytes: string; msg: MeshMsg }[] = [
  {
    name: "datagram, ECN CE, no segments",
    // tag | dst | src | ecn | segment size | contents
    bytes: `01 ${K_HEX} ${K2_HEX} 03 0000 ${HELLO}`,
    msg: { type: "datagram", dst: K, src: K2, ecn: 3, segmentSize: 0, contents: utf8("Hello World!") },
  },
  {
    name: "datagram batch, segment size 0x0102",
    bytes: `01 ${K2_HEX} ${K_HEX} 00 0102 ${HELLO}`,
    msg: { type: "datagram", dst: K2, src: K, ecn: 0, segmentSize: 0x102, contents: utf8("Hello World!") },
  },
  {
    name: "datagram with empty contents",
    bytes: `01 ${K_HEX} ${K2_HEX} 00 0000`,
    msg: { type: "datagram", dst: K, src: K2, ecn: 0, segmentSize: 0, contents: new Uint8Array(0) },
  },
  {
    name: "gone",
    // tag | dst | gone
    bytes: `02 ${K_HEX} ${K2_HEX}`,
    msg: { type: "gone", dst: K, gone: K2 },
  },
  {
    name: "claimed by instance 'i-1'",
    // tag | key | instance id
    bytes: `03 ${K_HEX} 692d31`,
    msg: { type: "claimed", key: K, by: utf8("i-1") },
  },
];

function encode(m: MeshMsg): Uint8Array {
  switch (m.type) {
    case "datagram":
      return encodeMeshDatagram(m.dst, m.src, m.ecn, m.segmentSize, m.contents);
    case "gone":
      return encodeMeshGone(m.dst, m.gone);
    case "claimed":
      return encodeMeshClaimed(m.key, m.by);
  }
}

for (const v of VECTORS) {
  Deno.test(`encodeMesh*() and decodeMesh() match the vector: ${v.name}`, () => {
    const bytes = hex(v.bytes.replace(/\s+/g, ""));
    assert.equal(toHex(encode(v.msg)), toHex(bytes));
    assert.deepEqual(decodeMesh(bytes), v.msg);
  });
}

Deno.test("writeMeshDatagram() writes at an offset and returns the end", () => {
  const buf = new Uint8Array(5 + MESH_DATAGRAM_HEADER_LEN + 3).fill(0xee);
  const end = writeMeshDatagram(buf, 5, K, K2, 1, 7, utf8("abc"));
  assert.equal(end, buf.length);
  assert.deepEqual(buf.subarray(0, 5), new Uint8Array(5).fill(0xee));
  assert.deepEqual(decodeMesh(buf.subarray(5)), {
    type: "datagram",
    dst: K,
    src: K2,
    ecn: 1,
    segmentSize: 7,
    contents: utf8("abc"),
  });
});

Deno.test("decodeMesh() rejects short, long, empty and unknown messages", () => {
  assert.throws(() => decodeMesh(new Uint8Array(0)), SyntaxError);
  assert.throws(() => decodeMesh(Uint8Array.of(0x7f)), { name: "SyntaxError", message: /tag 0x7f/ });
  assert.throws(() => decodeMesh(new Uint8Array(MESH_DATAGRAM_HEADER_LEN - 1).fill(1)), RangeError);
  assert.throws(() => decodeMesh(encodeMeshGone(K, K2).subarray(0, 64)), RangeError);
  assert.throws(() => decodeMesh(Uint8Array.of(...encodeMeshGone(K, K2), 0)), RangeError);
  assert.throws(() => decodeMesh(encodeMeshClaimed(K, utf8("x")).subarray(0, 33)), RangeError);
  assert.throws(() => encodeMeshClaimed(K, new Uint8Array(65)), RangeError);
});

Deno.test("decodeMesh() throws only SyntaxError or RangeError on perturbed messages (seeded)", () => {
  const rng = new Rng(0x6d657368);
  const valid = VECTORS.map((v) => hex(v.bytes.replace(/\s+/g, "")));
  for (let i = 0; i < 5000; i++) {
    const b = perturb(rng, rng.pick(valid));
    assertOnlyThrows(() => decodeMesh(b), [SyntaxError, RangeError], `seed 0x6d657368 iteration ${i}`);
  }
});

Deno.test("dispatchMesh() calls the sink and skips our own claimed notices", () => {
  const calls: string[] = [];
  const sink: MeshSink = {
    datagram: (dst, src, ecn, seg, contents) =>
      calls.push(`datagram ${toHex(dst).slice(0, 4)} ${toHex(src).slice(0, 4)} ${ecn} ${seg} ${toHex(contents)}`),
    gone: (dst, gone) => calls.push(`gone ${toHex(dst).slice(0, 4)} ${toHex(gone).slice(0, 4)}`),
    claimed: (key) => calls.push(`claimed ${toHex(key).slice(0, 4)}`),
  };
  const self = utf8("me");
  assert.equal(dispatchMesh(encodeMeshDatagram(K, K2, 2, 0, Uint8Array.of(9)), sink, self), "datagram");
  assert.equal(dispatchMesh(encodeMeshGone(K2, K), sink, self), "gone");
  assert.equal(dispatchMesh(encodeMeshClaimed(K, utf8("other")), sink, self), "claimed");
  assert.equal(dispatchMesh(encodeMeshClaimed(K, utf8("me")), sink, self), "own-claim");
  assert.deepEqual(calls, ["datagram 197f abab 2 0 09", "gone abab 197f", "claimed 197f"]);
});

Deno.test("frameMessages() and unframeMessages() round-trip, including empty and 64 KiB messages", () => {
  const msgs = [new Uint8Array(0), utf8("a"), new Uint8Array(65_536).fill(7), encodeMeshGone(K, K2)];
  const framed = frameMessages(msgs);
  assert.equal(toHex(framed.subarray(0, 9)), "000000000000000161");
  assert.deepEqual(unframeMessages(framed), msgs);
  assert.deepEqual(unframeMessages(new Uint8Array(0)), []);
});

Deno.test("unframeMessages() rejects truncated input", () => {
  const framed = frameMessages([utf8("hello")]);
  assert.throws(() => unframeMessages(framed.subarray(0, 3)), RangeError);
  assert.throws(() => unframeMessages(framed.subarray(0, 8)), { name: "RangeError", message: /runs past the end/ });
});
