import assert from "node:assert/strict";
import {
  crc32,
  encodeBindingRequest,
  encodeBindingSuccess,
  ipBytes,
  parseBindingRequest,
  parseBindingSuccess,
} from "./codec.ts";

const hex = (s: string) => new Uint8Array(s.replace(/\s+/g, "").match(/../g)!.map((h) => parseInt(h, 16)));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

// Spec §5 vector (upstream protos/stun.rs): txid 12×01, client 1.2.3.4:254.
const IROH_REQUEST = "000100082112a442 010101010101010101010101 8028 0004 5bbbe89e";
const IROH_RESPONSE = "0101000c2112a442 010101010101010101010101 0020 0008 0001 21ec 2010a746";

Deno.test("parseBindingRequest() accepts iroh 0.35's request and encodeBindingSuccess() gives upstream's reply", () => {
  const req = parseBindingRequest(hex(IROH_REQUEST));
  assert.ok(typeof req !== "string", String(req));
  assert.equal(req.kind, "rfc5389");
  assert.equal(toHex(encodeBindingSuccess(req, { hostname: "1.2.3.4", port: 254 })), toHex(hex(IROH_RESPONSE)));
  assert.equal(toHex(encodeBindingRequest(new Uint8Array(12).fill(1))), toHex(hex(IROH_REQUEST)));
});

Deno.test("encodeBindingSuccess() reports IPv6 and IPv4-mapped sources, and parseBindingSuccess() reads them back", () => {
  const req = parseBindingRequest(encodeBindingRequest(new Uint8Array(12).fill(7)));
  assert.ok(typeof req !== "string");
  const v6 = encodeBindingSuccess(req, { hostname: "2001:db8::1", port: 40000 });
  assert.equal(v6.length, 44);
  assert.deepEqual(parseBindingSuccess(v6), { hostname: "2001:db8:0:0:0:0:0:1", port: 40000 });
  const mapped = encodeBindingSuccess(req, { hostname: "::ffff:10.1.2.3", port: 5 });
  assert.equal(mapped.length, 32, "an IPv4-mapped source is answered as IPv4");
  assert.deepEqual(parseBindingSuccess(mapped), { hostname: "10.1.2.3", port: 5 });
});

Deno.test("RFC 3489 requests (no cookie) get MAPPED-ADDRESS, as Debian's stun-client sends them", () => {
  // Captured from `stun 127.0.0.1:port` (stun-client 0.97): 16-byte id, CHANGE-REQUEST 0.
  const raw = hex("0001 0008 01e25b04e6d45f0470bd9b0ad1a5c403 0003 0004 00000000");
  const req = parseBindingRequest(raw);
  assert.ok(typeof req !== "string", String(req));
  assert.equal(req.kind, "rfc3489");
  const res = encodeBindingSuccess(req, { hostname: "127.0.0.1", port: 26367 });
  assert.equal(toHex(res), "0101000c" + "01e25b04e6d45f0470bd9b0ad1a5c403" + "000100080001" + "66ff" + "7f000001");
  // Its "change IP" / "change port" tests cannot be answered truthfully from one address.
  assert.equal(
    parseBindingRequest(hex("0001 0008 01e25b04e6d45f0470bd9b0ad1a5c403 0003 0004 00000004")),
    "redirect-refused",
  );
  assert.equal(
    parseBindingRequest(hex("0001 0008 01e25b04e6d45f0470bd9b0ad1a5c403 0003 0004 00000002")),
    "redirect-refused",
  );
});

Deno.test("parseBindingRequest() drops everything else", () => {
  const good = hex(IROH_REQUEST);
  const with_ = (i: number, v: number) => {
    const b = good.slice();
    b[i] = v;
    return b;
  };
  const cases: [string, Uint8Array, string][] = [
    ["short", good.subarray(0, 19), "not-stun"],
    ["top bits set", with_(0, 0x40), "not-stun"],
    [
      "binding response",
      hex("0101" + IROH_REQUEST.replace(/\s/g, "").slice(4)),
      "not-binding-request",
    ],
    ["allocate (TURN)", hex("0003" + IROH_REQUEST.replace(/\s/g, "").slice(4)), "not-binding-request"],
    ["indication", hex("0011" + IROH_REQUEST.replace(/\s/g, "").slice(4)), "not-binding-request"],
    ["length field too long", with_(3, 0x0c), "bad-length"],
    ["length not multiple of 4", with_(3, 0x07), "bad-length"],
    ["trailing byte", new Uint8Array([...good, 0]), "bad-length"],
    ["wrong magic cookie with FINGERPRINT", with_(7, 0x43), "bad-fingerprint"],
    ["bad CRC", with_(27, 0x00), "bad-fingerprint"],
    [
      "fingerprint not last",
      hex("000100102112a442 010101010101010101010101 8028 0004 5bbbe89e 8022 0004 61626364"),
      "bad-fingerprint",
    ],
    [
      "attribute overruns message",
      hex("000100082112a442 010101010101010101010101 8022 0008 61626364"),
      "bad-attribute",
    ],
    [
      "truncated attribute header",
      hex("000100042112a442 010101010101010101010101 8022 0004"),
      "bad-attribute",
    ],
    [
      "RESPONSE-ADDRESS (reflection)",
      hex("0001000c2112a442 010101010101010101010101 0002 0008 0001 0035 01020304"),
      "redirect-refused",
    ],
    ["RESPONSE-PORT", hex("000100082112a442 010101010101010101010101 0027 0002 0035 0000"), "redirect-refused"],
    ["oversized", new Uint8Array(2000), "not-stun"],
  ];
  for (const [name, pkt, why] of cases) assert.equal(parseBindingRequest(pkt), why, name);
});

Deno.test("parseBindingRequest() never throws and never answers big on random and mutated input", () => {
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const base = hex(IROH_REQUEST);
  for (let i = 0; i < 20000; i++) {
    const b = i % 2 ? new Uint8Array(Math.floor(rnd() * 80)).map(() => rnd() * 256) : base.slice();
    if (i % 2 === 0) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
    const r = parseBindingRequest(b);
    if (typeof r !== "string") {
      const res = encodeBindingSuccess(r, { hostname: "2001:db8::1", port: 1 });
      assert.ok(res.length <= 44);
    }
  }
});

Deno.test("crc32() and ipBytes() agree with known values", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.deepEqual([...ipBytes("::1")], [...new Uint8Array(15), 1]);
  assert.deepEqual([...ipBytes("[fe80::1%eth0]")].slice(0, 2), [0xfe, 0x80]);
  assert.deepEqual([...ipBytes("::ffff:1.2.3.4")], [1, 2, 3, 4]);
  assert.throws(() => ipBytes("1.2.3"), RangeError);
  assert.throws(() => ipBytes("1:2:3"), RangeError);
});
