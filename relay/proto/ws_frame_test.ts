import assert from "node:assert/strict";
import {
  closePayload,
  encodeWsFrame,
  writeWsHeader,
  wsAccept,
  WsClose,
  type WsEvent,
  wsHeaderLen,
  WsOpcode,
  WsProtocolError,
  WsReader,
} from "./ws_frame.ts";
import { assertOnlyThrows, concatBytes, hex, perturb, Rng, utf8 } from "../../tests/support/bytes.ts";

const MASK = hex("37fa213d");

/** Builds any frame, including ones `encodeWsFrame` never makes (FIN clear, RSV bits, lying lengths). */
function rawFrame(
  opts: { fin?: boolean; rsv?: number; opcode: number; payload?: Uint8Array; mask?: Uint8Array | null },
): Uint8Array {
  const payload = opts.payload ?? new Uint8Array(0);
  const mask = opts.mask === undefined ? MASK : opts.mask;
  const out = new Uint8Array(wsHeaderLen(payload.length, mask !== null) + payload.length);
  const h = writeWsHeader(out, 0, opts.opcode, payload.length, mask ?? undefined);
  if (opts.fin === false) out[0] = out[0]! & 0x7f;
  out[0] = out[0]! | ((opts.rsv ?? 0) << 4);
  for (let i = 0; i < payload.length; i++) out[h + i] = payload[i]! ^ (mask ? mask[i & 3]! : 0);
  return out;
}

function serverReader(maxMessage = 1 << 20): WsReader {
  return new WsReader({ maxMessage, expectMasked: true });
}

/** All events of `bytes` pushed in one chunk; payloads copied. */
function readAll(r: WsReader, bytes: Uint8Array): WsEvent[] {
  r.push(bytes);
  const out: WsEvent[] = [];
  for (let ev = r.next(); ev !== null; ev = r.next()) {
    out.push("data" in ev ? { ...ev, data: ev.data.slice() } : ev);
  }
  return out;
}

function assertWsError(fn: () => unknown, code: number, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof WsProtocolError, `expected WsProtocolError, got ${e}`);
    assert.equal(e.code, code);
    if (message) assert.match(e.message, message);
    return true;
  });
}

Deno.test("wsAccept() gives the RFC 6455 §1.3 example value", () => {
  assert.equal(wsAccept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
});

Deno.test("writeWsHeader() picks the 7-bit, 16-bit and 64-bit length forms at 125/126 and 65535/65536", () => {
  const cases: [number, string][] = [
    [0, "8200"],
    [125, "827d"],
    [126, "827e007e"],
    [65535, "827effff"],
    [65536, "827f0000000000010000"],
  ];
  for (const [len, want] of cases) {
    const buf = new Uint8Array(14);
    const h = writeWsHeader(buf, 0, WsOpcode.Binary, len);
    assert.deepEqual(buf.subarray(0, h), hex(want), `len ${len}`);
    assert.equal(h, wsHeaderLen(len));
  }
  const buf = new Uint8Array(14);
  const h = writeWsHeader(buf, 0, WsOpcode.Binary, 5, MASK);
  assert.deepEqual(buf.subarray(0, h), hex("8285 37fa213d"));
  assert.equal(h, wsHeaderLen(5, true));
});

Deno.test("encodeWsFrame() masks the RFC 6455 §5.7 example and WsReader unmasks it", () => {
  // "Hello" masked with 37 fa 21 3d (RFC 6455 §5.7).
  const f = encodeWsFrame(WsOpcode.Text, utf8("Hello"), MASK);
  assert.deepEqual(f, hex("818537fa213d7f9f4d5158"));
  assert.deepEqual(readAll(serverReader(), f), [{ kind: "message", binary: false, data: utf8("Hello") }]);
});

Deno.test("WsReader unmasks binary messages of every header length form", () => {
  const rng = new Rng(0x3355);
  for (const len of [0, 1, 2, 3, 4, 5, 125, 126, 127, 65535, 65536, 70000]) {
    const payload = rng.bytes(len);
    const f = encodeWsFrame(WsOpcode.Binary, payload, rng.bytes(4));
    const evs = readAll(serverReader(), f);
    assert.deepEqual(evs, [{ kind: "message", binary: true, data: payload }], `len ${len}`);
  }
});

Deno.test("WsReader rejects an unmasked client frame, and a masked server frame on the client side", () => {
  const unmasked = encodeWsFrame(WsOpcode.Binary, utf8("x"));
  assertWsError(() => readAll(serverReader(), unmasked), WsClose.ProtocolError, /not masked/);
  const masked = encodeWsFrame(WsOpcode.Binary, utf8("x"), MASK);
  const client = new WsReader({ maxMessage: 1000, expectMasked: false });
  assertWsError(() => readAll(client, masked), WsClose.ProtocolError, /masked/);
  assert.deepEqual(readAll(new WsReader({ maxMessage: 1000, expectMasked: false }), unmasked), [
    { kind: "message", binary: true, data: utf8("x") },
  ]);
});

Deno.test("WsReader rejects reserved bits and unknown opcodes", async (t) => {
  for (const rsv of [1, 2, 4]) {
    await t.step(`RSV ${rsv}`, () => {
      assertWsError(() => readAll(serverReader(), rawFrame({ opcode: 2, rsv })), WsClose.ProtocolError, /Reserved/);
    });
  }
  for (const opcode of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) {
    await t.step(`opcode ${opcode}`, () => {
      assertWsError(() => readAll(serverReader(), rawFrame({ opcode })), WsClose.ProtocolError, /opcode/);
    });
  }
});

Deno.test("WsReader enforces the control frame rules (FIN set, ≤ 125 bytes, close payload not 1 byte)", () => {
  assertWsError(() => readAll(serverReader(), rawFrame({ opcode: WsOpcode.Ping, fin: false })), 1002, /Fragmented/);
  assertWsError(
    () => readAll(serverReader(), rawFrame({ opcode: WsOpcode.Ping, payload: new Uint8Array(126) })),
    1002,
    /125/,
  );
  assertWsError(
    () => readAll(serverReader(), rawFrame({ opcode: WsOpcode.Close, payload: Uint8Array.of(3) })),
    1002,
    /1 byte/,
  );
  // 125 bytes is fine.
  const ping = readAll(serverReader(), rawFrame({ opcode: WsOpcode.Ping, payload: new Uint8Array(125).fill(7) }));
  assert.deepEqual(ping, [{ kind: "ping", data: new Uint8Array(125).fill(7) }]);
});

Deno.test("WsReader reports ping, pong and close events with their payloads", () => {
  const evs = readAll(
    serverReader(),
    concatBytes(
      rawFrame({ opcode: WsOpcode.Ping, payload: utf8("p") }),
      rawFrame({ opcode: WsOpcode.Pong, payload: utf8("q") }),
      rawFrame({ opcode: WsOpcode.Close, payload: closePayload(1000, "bye") }),
      rawFrame({ opcode: WsOpcode.Close }),
    ),
  );
  assert.deepEqual(evs, [
    { kind: "ping", data: utf8("p") },
    { kind: "pong", data: utf8("q") },
    { kind: "close", code: 1000, reason: "bye" },
    { kind: "close", code: 1005, reason: "" },
  ]);
});

Deno.test("WsReader reassembles a fragmented message, with control frames between the fragments", () => {
  const evs = readAll(
    serverReader(),
    concatBytes(
      rawFrame({ opcode: WsOpcode.Binary, fin: false, payload: utf8("Hel") }),
      rawFrame({ opcode: WsOpcode.Ping, payload: utf8("!") }),
      rawFrame({ opcode: WsOpcode.Continuation, fin: false, payload: utf8("lo ") }),
      rawFrame({ opcode: WsOpcode.Continuation, fin: false, payload: new Uint8Array(0) }),
      rawFrame({ opcode: WsOpcode.Continuation, payload: utf8("World") }),
      rawFrame({ opcode: WsOpcode.Text, fin: false, payload: utf8("te") }),
      rawFrame({ opcode: WsOpcode.Continuation, payload: utf8("xt") }),
    ),
  );
  assert.deepEqual(evs, [
    { kind: "ping", data: utf8("!") },
    { kind: "message", binary: true, data: utf8("Hello World") },
    { kind: "message", binary: false, data: utf8("text") },
  ]);
});

Deno.test("WsReader rejects a continuation without a message and a new message inside a fragmented one", () => {
  assertWsError(() => readAll(serverReader(), rawFrame({ opcode: WsOpcode.Continuation })), 1002, /Continuation/);
  assertWsError(
    () =>
      readAll(
        serverReader(),
        concatBytes(
          rawFrame({ opcode: WsOpcode.Binary, fin: false, payload: utf8("a") }),
          rawFrame({ opcode: WsOpcode.Binary, payload: utf8("b") }),
        ),
      ),
    1002,
    /inside a fragmented/,
  );
});

Deno.test("WsReader enforces the message size limit before buffering, also across fragments", () => {
  assertWsError(() => readAll(serverReader(100), rawFrame({ opcode: 2, payload: new Uint8Array(101) })), 1009);
  assert.equal(readAll(serverReader(100), rawFrame({ opcode: 2, payload: new Uint8Array(100) })).length, 1);
  assertWsError(
    () =>
      readAll(
        serverReader(100),
        concatBytes(
          rawFrame({ opcode: 2, fin: false, payload: new Uint8Array(60) }),
          rawFrame({ opcode: 0, payload: new Uint8Array(41) }),
        ),
      ),
    1009,
  );
  // The header alone is enough to refuse: no payload bytes needed.
  const r = serverReader(1 << 20);
  r.push(hex("82ff 0000000000200000")); // masked, 64-bit length of 2 MiB, no mask key yet
  assertWsError(() => r.next(), 1009);
  const huge = serverReader();
  huge.push(hex("82ff 0000000100000000 37fa213d"));
  assertWsError(() => huge.next(), 1009);
  const topBit = serverReader();
  topBit.push(hex("82ff 8000000000000001 37fa213d"));
  assertWsError(() => topBit.next(), 1002, /top bit/);
});

Deno.test("WsReader returns null on partial frames and the same events under random chunking (seeded)", () => {
  const rng = new Rng(0x5eed_0006);
  const frames: Uint8Array[] = [];
  const want: WsEvent[] = [];
  for (let i = 0; i < 200; i++) {
    // Two messages need the 64-bit length form; the rest stay small so the 1-byte chunking is quick.
    const payload = rng.bytes(i === 10 || i === 150 ? 66000 : rng.pick([0, 1, 5, 125, 126, 300, 2000]));
    switch (rng.int(4)) {
      case 0: {
        const ping = payload.subarray(0, Math.min(125, payload.length));
        frames.push(rawFrame({ opcode: WsOpcode.Ping, payload: ping, mask: rng.bytes(4) }));
        want.push({ kind: "ping", data: ping });
        break;
      }
      case 1: {
        const cut = rng.int(payload.length + 1);
        frames.push(
          rawFrame({ opcode: WsOpcode.Binary, fin: false, payload: payload.subarray(0, cut), mask: rng.bytes(4) }),
        );
        frames.push(rawFrame({ opcode: WsOpcode.Continuation, payload: payload.subarray(cut), mask: rng.bytes(4) }));
        want.push({ kind: "message", binary: true, data: payload });
        break;
      }
      default:
        frames.push(encodeWsFrame(WsOpcode.Binary, payload, rng.bytes(4)));
        want.push({ kind: "message", binary: true, data: payload });
    }
  }
  const stream = concatBytes(...frames);
  for (let round = 0; round < 6; round++) {
    const r = serverReader();
    const got: WsEvent[] = [];
    let off = 0;
    while (off < stream.length) {
      const n = 1 + rng.int(round < 3 ? 9 : 20000);
      const scratch = stream.slice(off, off + n); // the caller's read buffer, reused afterwards
      r.push(scratch);
      for (let ev = r.next(); ev !== null; ev = r.next()) {
        got.push("data" in ev ? { ...ev, data: ev.data.slice() } : ev);
      }
      scratch.fill(0xee);
      off += n;
    }
    assert.equal(got.length, want.length, `round ${round}`);
    for (let i = 0; i < want.length; i++) assert.deepEqual(got[i], want[i], `round ${round} event ${i}`);
  }
});

Deno.test("WsReader only throws WsProtocolError on perturbed streams under random chunking (seeded fuzz)", () => {
  const rng = new Rng(0x5eed_0007);
  const bases = [
    encodeWsFrame(WsOpcode.Binary, utf8("hello relay"), MASK),
    encodeWsFrame(WsOpcode.Binary, new Uint8Array(200), MASK),
    rawFrame({ opcode: WsOpcode.Binary, fin: false, payload: utf8("ab") }),
    rawFrame({ opcode: WsOpcode.Continuation, payload: utf8("cd") }),
    rawFrame({ opcode: WsOpcode.Ping, payload: utf8("p") }),
    rawFrame({ opcode: WsOpcode.Close, payload: closePayload(1000, "x") }),
    hex("82ff 0000000000000010 37fa213d"),
  ];
  for (let i = 0; i < 3_000; i++) {
    const parts: Uint8Array[] = [];
    for (let j = 0; j < 1 + rng.int(5); j++) {
      parts.push(rng.int(2) === 0 ? perturb(rng, rng.pick(bases)) : rng.pick(bases));
    }
    const stream = concatBytes(...parts);
    const r = new WsReader({ maxMessage: 4096, expectMasked: rng.int(4) !== 0 });
    assertOnlyThrows(
      () => {
        let off = 0;
        while (off < stream.length) {
          const n = 1 + rng.int(30);
          r.push(stream.slice(off, off + n));
          off += n;
          for (let ev = r.next(); ev !== null; ev = r.next()) {
            if (ev.kind === "message") assert.ok(ev.data.length <= 4096);
          }
        }
      },
      [WsProtocolError],
      `seed 0x5eed0007 iteration ${i}`,
    );
  }
});

Deno.test("closePayload() writes the code big-endian and truncates the reason to 123 bytes", () => {
  assert.deepEqual(closePayload(1002, "x"), hex("03ea 78"));
  assert.equal(closePayload(1000, "r".repeat(500)).length, 125);
  assert.deepEqual(closePayload(1009), hex("03f1"));
});

Deno.test("WsReader unmasks payloads of every length at every buffer alignment (word-wise XOR path)", () => {
  const rng = new Rng(77);
  for (let len = 0; len <= 140; len += len < 40 ? 1 : 13) {
    for (let shift = 0; shift < 8; shift++) {
      const payload = rng.bytes(len);
      const mask = rng.bytes(4);
      const frame = encodeWsFrame(WsOpcode.Binary, payload, mask);
      // Place the frame at an arbitrary byte offset inside a larger buffer.
      const host = new Uint8Array(frame.length + 8);
      host.set(frame, shift);
      const r = new WsReader({ maxMessage: 1 << 20, expectMasked: true });
      r.push(host.subarray(shift, shift + frame.length));
      const ev = r.next();
      assert.ok(ev && ev.kind === "message", `len ${len} shift ${shift}`);
      assert.deepEqual(ev.data, payload, `len ${len} shift ${shift}`);
    }
  }
});

Deno.test("WsReader holds what arrived, not what a 64-bit length announces", () => {
  const r = new WsReader({ maxMessage: 1024 * 1024, expectMasked: true });
  // Masked binary frame, 127 + 64-bit length 0x100000 (1 MiB), mask, then 3 payload bytes.
  r.push(new Uint8Array([0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4, 9, 9, 9]));
  assert.equal(r.read(), -1);
  assert.ok(r.ownedBytes <= 4096, `owns ${r.ownedBytes} bytes for 17 that arrived`);
  // A 16-bit length header (65535) with a few bytes: same.
  const r2 = new WsReader({ maxMessage: 1024 * 1024, expectMasked: true });
  r2.push(new Uint8Array([0x82, 0xfe, 0xff, 0xff, 1, 2, 3, 4, 7]));
  assert.equal(r2.read(), -1);
  assert.ok(r2.ownedBytes <= 4096, `owns ${r2.ownedBytes}`);
});
