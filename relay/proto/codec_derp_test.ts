import assert from "node:assert/strict";
import {
  CLIENT_INFO_MAGIC,
  decodeDerp,
  DERP_HEADER_LEN,
  DerpFrameReader,
  type DerpMsg,
  encodeDerp,
  encodeDerpWs,
} from "./codec_derp.ts";
import { DerpFrame, MAX_FRAME_SIZE, MAX_PACKET_SIZE } from "./frame_type.ts";
import { clientInfo } from "../../tests/support/relay_client.ts";
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

/** Spec §2.4, 0.35 vectors: message, derp (stream) form, WebSocket form when given. */
const VECTORS: { name: string; msg: DerpMsg; derp: string; ws?: string }[] = [
  {
    name: "ClientInfo",
    msg: clientInfo(TEST_SECRET),
    derp: `02 0000006a 52454c4159f09f9491 ${K_HEX}
      88e77b22f292ab37435da8de0bc8cb84e288f4e73b3582a52731e9ff9865465c87e05e8d427df422bb6e85e1c05f6f749837baa4a5c7eba3230d77569910430e
      03`,
    ws: `02 52454c4159f09f9491 ${K_HEX}
      88e77b22f292ab37435da8de0bc8cb84e288f4e73b3582a52731e9ff9865465c87e05e8d427df422bb6e85e1c05f6f749837baa4a5c7eba3230d77569910430e
      03`,
  },
  {
    name: "SendPacket",
    msg: { type: "SendPacket", dstKey: K, packet: utf8("Goodbye!") },
    derp: `04 00000028 ${K_HEX} 476f6f6462796521`,
    ws: `04 ${K_HEX} 476f6f6462796521`,
  },
  {
    name: "RecvPacket",
    msg: { type: "RecvPacket", srcKey: K, packet: utf8("Hello World!") },
    derp: `05 0000002c ${K_HEX} 48656c6c6f20576f726c6421`,
  },
  {
    name: "Ping",
    msg: { type: "Ping", data: new Uint8Array(8).fill(0x2a) },
    derp: "0c 00000008 2a2a2a2a2a2a2a2a",
    ws: "0c 2a2a2a2a2a2a2a2a",
  },
  {
    name: "Pong",
    msg: { type: "Pong", data: new Uint8Array(8).fill(0x2a) },
    derp: "0d 00000008 2a2a2a2a2a2a2a2a",
    ws: "0d 2a2a2a2a2a2a2a2a",
  },
  { name: "KeepAlive", msg: { type: "KeepAlive" }, derp: "06 00000000", ws: "06" },
  {
    name: "Health",
    msg: { type: "Health", problem: "not authenticated" },
    derp: "0e 00000011 6e6f742061757468656e74696361746564",
  },
  { name: "PeerGone", msg: { type: "PeerGone", key: K }, derp: `08 00000020 ${K_HEX}` },
  { name: "NotePreferred", msg: { type: "NotePreferred", preferred: true }, derp: "07 00000001 01", ws: "07 01" },
  {
    name: "Restarting",
    msg: { type: "Restarting", reconnectInMs: 10, tryForMs: 20 },
    derp: "0f 00000008 0000000a 00000014",
  },
];

for (const v of VECTORS) {
  Deno.test(`encodeDerp() gives the spec vector for ${v.name}`, () => {
    assert.deepEqual(encodeDerp(v.msg), hex(v.derp));
    // The WebSocket form is the stream form without the 4 length bytes.
    const wsForm = hex(v.ws ?? v.derp.replace(/^(\S\S) \S{8}/, "$1"));
    assert.deepEqual(encodeDerpWs(v.msg), wsForm);
  });

  Deno.test(`decodeDerp() gives the message of the spec vector for ${v.name}`, () => {
    const bytes = hex(v.derp);
    assert.deepEqual(decodeDerp(bytes[0]!, bytes.subarray(DERP_HEADER_LEN)), v.msg);
    const ws = encodeDerpWs(v.msg);
    assert.deepEqual(decodeDerp(ws[0]!, ws.subarray(1)), v.msg);
  });

  Deno.test(`DerpFrameReader splits the stream vector for ${v.name}`, () => {
    const r = new DerpFrameReader();
    r.push(hex(v.derp));
    const f = r.next();
    assert.ok(f);
    assert.deepEqual(decodeDerp(f.type, f.payload), v.msg);
    assert.equal(r.next(), null);
    assert.equal(r.buffered, 0);
  });
}

Deno.test("the ClientInfo vector is 107 bytes in WebSocket form and starts with the RELAY🔑 magic", () => {
  const ws = encodeDerpWs(clientInfo(TEST_SECRET));
  assert.equal(ws.length, 107);
  assert.deepEqual(ws.subarray(1, 10), CLIENT_INFO_MAGIC);
  assert.deepEqual(CLIENT_INFO_MAGIC, utf8("RELAY🔑"));
});

Deno.test("decodeDerp() rejects malformed frames with SyntaxError", async (t) => {
  const key = K;
  const cases: { name: string; type: number; payload: Uint8Array }[] = [
    { name: "unknown type 0", type: 0, payload: new Uint8Array(0) },
    { name: "unknown type 3", type: 3, payload: new Uint8Array(8) },
    { name: "unknown type 9", type: 9, payload: new Uint8Array(8) },
    { name: "unknown type 16", type: 16, payload: new Uint8Array(0) },
    { name: "unknown type 255", type: 255, payload: new Uint8Array(0) },
    { name: "ClientInfo too short", type: DerpFrame.ClientInfo, payload: concatBytes(CLIENT_INFO_MAGIC, key) },
    {
      name: "ClientInfo with bad magic",
      type: DerpFrame.ClientInfo,
      payload: concatBytes(utf8("RELAY!!!!"), key, new Uint8Array(64), Uint8Array.of(3)),
    },
    {
      name: "ClientInfo with no message byte",
      type: DerpFrame.ClientInfo,
      payload: concatBytes(CLIENT_INFO_MAGIC, key, new Uint8Array(64)),
    },
    { name: "SendPacket shorter than a key", type: DerpFrame.SendPacket, payload: new Uint8Array(31) },
    { name: "RecvPacket shorter than a key", type: DerpFrame.RecvPacket, payload: new Uint8Array(0) },
    { name: "KeepAlive with a byte", type: DerpFrame.KeepAlive, payload: new Uint8Array(1) },
    { name: "NotePreferred empty", type: DerpFrame.NotePreferred, payload: new Uint8Array(0) },
    { name: "NotePreferred value 2", type: DerpFrame.NotePreferred, payload: Uint8Array.of(2) },
    { name: "NotePreferred two bytes", type: DerpFrame.NotePreferred, payload: Uint8Array.of(1, 0) },
    { name: "PeerGone 31 bytes", type: DerpFrame.PeerGone, payload: new Uint8Array(31) },
    { name: "PeerGone 33 bytes", type: DerpFrame.PeerGone, payload: new Uint8Array(33) },
    { name: "Ping 7 bytes", type: DerpFrame.Ping, payload: new Uint8Array(7) },
    { name: "Ping 9 bytes", type: DerpFrame.Ping, payload: new Uint8Array(9) },
    { name: "Pong 0 bytes", type: DerpFrame.Pong, payload: new Uint8Array(0) },
    { name: "Health with invalid UTF-8", type: DerpFrame.Health, payload: Uint8Array.of(0x6e, 0xff, 0xfe) },
    { name: "Restarting 7 bytes", type: DerpFrame.Restarting, payload: new Uint8Array(7) },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.throws(() => decodeDerp(c.type, c.payload), SyntaxError);
    });
  }
});

Deno.test("decodeDerp() rejects a fixed-size frame plus one byte (broken_frame_handling)", () => {
  for (const v of VECTORS) {
    const bytes = hex(v.derp);
    const type = bytes[0]!;
    // Only fixed-size frames: variable ones (ClientInfo, packets, Health) legitimately accept more.
    if ([DerpFrame.ClientInfo, DerpFrame.SendPacket, DerpFrame.RecvPacket, DerpFrame.Health].includes(type as 2)) {
      continue;
    }
    const longer = concatBytes(bytes.subarray(DERP_HEADER_LEN), Uint8Array.of(0));
    assert.throws(() => decodeDerp(type, longer), SyntaxError, v.name);
  }
});

Deno.test("decodeDerp() accepts a packet of exactly 64 KiB and rejects one byte more with RangeError", () => {
  const ok = concatBytes(K, new Uint8Array(MAX_PACKET_SIZE));
  const msg = decodeDerp(DerpFrame.SendPacket, ok);
  assert.equal(msg.type, "SendPacket");
  assert.equal((msg as { packet: Uint8Array }).packet.length, MAX_PACKET_SIZE);
  const tooBig = concatBytes(K, new Uint8Array(MAX_PACKET_SIZE + 1));
  assert.throws(() => decodeDerp(DerpFrame.SendPacket, tooBig), RangeError);
  assert.throws(() => decodeDerp(DerpFrame.RecvPacket, tooBig), RangeError);
});

Deno.test("decodeDerp() keeps ClientInfo trailing message bytes for the postcard decoder", () => {
  const info = clientInfo(TEST_SECRET);
  const payload = concatBytes(encodeDerpWs(info).subarray(1), Uint8Array.of(0xaa, 0xbb));
  const m = decodeDerp(DerpFrame.ClientInfo, payload);
  assert.equal(m.type, "ClientInfo");
  assert.deepEqual((m as { message: Uint8Array }).message, Uint8Array.of(3, 0xaa, 0xbb));
});

Deno.test("decodeDerp() round-trips Health text, including empty and multi-byte UTF-8 (test_basic_read_write)", () => {
  for (const problem of ["", "not authenticated", "ünïcödé 🔑", "x".repeat(4000)]) {
    const f = encodeDerp({ type: "Health", problem });
    const r = new DerpFrameReader();
    r.push(f);
    const raw = r.next()!;
    assert.deepEqual(decodeDerp(raw.type, raw.payload), { type: "Health", problem });
  }
});

Deno.test("DerpFrameReader rejects a header announcing more than 1 MiB with RangeError", () => {
  const r = new DerpFrameReader();
  r.push(hex("04 00100001"));
  assert.throws(() => r.next(), RangeError);
  // Exactly 1 MiB is allowed: the reader waits for the body.
  const ok = new DerpFrameReader();
  const header = new Uint8Array(5);
  header[0] = 4;
  new DataView(header.buffer).setUint32(1, MAX_FRAME_SIZE);
  ok.push(header);
  assert.equal(ok.next(), null);
  const r2 = new DerpFrameReader();
  r2.push(hex("04 ffffffff"));
  assert.throws(() => r2.next(), RangeError);
});

Deno.test("DerpFrameReader returns null until a frame is complete, then the frame", () => {
  const f = hex(`04 00000028 ${K_HEX} 476f6f6462796521`);
  const r = new DerpFrameReader();
  for (let i = 0; i < f.length - 1; i++) {
    r.push(f.subarray(i, i + 1));
    assert.equal(r.next(), null, `after ${i + 1} bytes`);
  }
  r.push(f.subarray(f.length - 1));
  const got = r.next()!;
  assert.equal(got.type, 4);
  assert.deepEqual(got.payload, f.subarray(5));
});

Deno.test("DerpFrameReader returns every frame of a chunk holding several", () => {
  const frames = VECTORS.map((v) => hex(v.derp));
  const r = new DerpFrameReader();
  r.push(concatBytes(...frames));
  for (const f of frames) {
    const got = r.next()!;
    assert.equal(got.type, f[0]);
    assert.deepEqual(got.payload, f.subarray(5));
  }
  assert.equal(r.next(), null);
});

Deno.test("DerpFrameReader reassembles the same frames under random chunking (seeded)", () => {
  const rng = new Rng(0x5eed_0035);
  const frames: Uint8Array[] = [];
  for (let i = 0; i < 200; i++) {
    const v = rng.pick(VECTORS);
    frames.push(
      v.name === "SendPacket"
        ? encodeDerp({ type: "SendPacket", dstKey: K, packet: rng.bytes(rng.int(3000)) })
        : hex(v.derp),
    );
  }
  const stream = concatBytes(...frames);
  for (let round = 0; round < 20; round++) {
    const r = new DerpFrameReader();
    const got: Uint8Array[] = [];
    let off = 0;
    while (off < stream.length) {
      const n = 1 + rng.int(round < 10 ? 7 : 5000);
      // The transport reuses its read buffer: copy into a scratch buffer that is then clobbered.
      const scratch = stream.slice(off, off + n);
      r.push(scratch);
      for (let f = r.next(); f !== null; f = r.next()) {
        got.push(concatBytes(Uint8Array.of(f.type), f.payload));
      }
      scratch.fill(0xee);
      off += n;
    }
    assert.equal(got.length, frames.length, `round ${round}`);
    for (let i = 0; i < frames.length; i++) {
      assert.deepEqual(got[i], concatBytes(frames[i]!.subarray(0, 1), frames[i]!.subarray(5)), `round ${round} #${i}`);
    }
  }
});

Deno.test("decodeDerp() only throws SyntaxError or RangeError on perturbed vectors (seeded fuzz)", () => {
  const rng = new Rng(0xde4b_0001);
  const bases = VECTORS.map((v) => hex(v.derp).subarray(DERP_HEADER_LEN));
  const types = VECTORS.map((v) => hex(v.derp)[0]!);
  for (let i = 0; i < 20_000; i++) {
    const k = rng.int(bases.length);
    const payload = perturb(rng, bases[k]!);
    const type = rng.int(8) === 0 ? rng.int(256) : types[k]!;
    assertOnlyThrows(
      () => {
        const m = decodeDerp(type, payload);
        // Whatever decodes must encode to the same bytes (frame_ws_roundtrip).
        if (m.type !== "NotePreferred") assert.deepEqual(encodeDerpWs(m).subarray(1), payload, `iteration ${i}`);
      },
      [SyntaxError, RangeError],
      `seed 0xde4b0001 iteration ${i}`,
    );
  }
});

Deno.test("DerpFrameReader only throws RangeError on perturbed streams under random chunking (seeded fuzz)", () => {
  const rng = new Rng(0xde4b_0002);
  const bases = VECTORS.map((v) => hex(v.derp));
  for (let i = 0; i < 2_000; i++) {
    const parts: Uint8Array[] = [];
    for (let j = 0; j < 1 + rng.int(6); j++) {
      parts.push(rng.int(3) === 0 ? perturb(rng, rng.pick(bases)) : rng.pick(bases));
    }
    const stream = concatBytes(...parts);
    const r = new DerpFrameReader();
    assertOnlyThrows(
      () => {
        let off = 0;
        while (off < stream.length) {
          const n = 1 + rng.int(40);
          r.push(stream.slice(off, off + n));
          off += n;
          for (let f = r.next(); f !== null; f = r.next()) decodeDerp(f.type, f.payload);
        }
      },
      [SyntaxError, RangeError],
      `seed 0xde4b0002 iteration ${i}`,
    );
  }
});

Deno.test("DerpFrameReader holds what arrived, not what a header announces, and frees it after", () => {
  const r = new DerpFrameReader();
  // 02 00 10 00 00: SendPacket announcing 1 MiB, then 3 bytes.
  r.push(new Uint8Array([2, 0, 0x10, 0, 0, 1, 2, 3]));
  assert.equal(r.read(), -1);
  assert.ok(r.ownedBytes <= 4096, `owns ${r.ownedBytes} bytes for 8 that arrived`);
  // The frame arrives in 64 KiB pieces: storage stays within twice what arrived.
  let arrived = 8;
  const piece = new Uint8Array(64 * 1024);
  while (arrived + piece.length < 5 + 0x100000) {
    r.push(piece);
    arrived += piece.length;
    assert.equal(r.read(), -1);
    assert.ok(r.ownedBytes <= 2 * arrived + 4096, `owns ${r.ownedBytes} for ${arrived}`);
  }
  const rest = 5 + 0x100000 - arrived;
  r.push(new Uint8Array(rest + 5)); // the end of the frame, then an empty frame of type 0
  assert.equal(r.read(), 2);
  assert.equal(r.end - r.start, 0x100000);
  assert.equal(r.read(), 0);
  // Nothing partial left: the megabyte of storage is let go.
  assert.equal(r.read(), -1);
  assert.ok(r.ownedBytes <= 64 * 1024, `still owns ${r.ownedBytes}`);
});
