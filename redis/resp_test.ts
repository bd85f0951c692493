import assert from "node:assert/strict";
import {
  bulkLen,
  encodeCommand,
  OutBuffer,
  parseRedisUrl,
  RespError,
  RespParser,
  respText,
  type RespValue,
} from "./resp.ts";
import { assertOnlyThrows, concatBytes, perturb, Rng, utf8 } from "../tests/support/bytes.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("encodeCommand() writes an array of binary-safe bulk strings", () => {
  assert.equal(text(encodeCommand(["PING"])), "*1\r\n$4\r\nPING\r\n");
  const cmd = encodeCommand(["PUBLISH", "ch", Uint8Array.of(0, 13, 10, 255)]);
  assert.deepEqual(
    cmd,
    concatBytes(utf8("*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\n"), Uint8Array.of(0, 13, 10, 255), utf8("\r\n")),
  );
  assert.equal(bulkLen(4), "$4\r\n".length + 4 + 2);
  assert.equal(bulkLen(1200), "$1200\r\n".length + 1200 + 2);
});

/** Replies as Redis sends them, and what the parser makes of them (bulk strings as text for comparison). */
const REPLIES: [string, unknown][] = [
  ["+OK\r\n", "OK"],
  ["-ERR unknown command\r\n", new RespError("ERR unknown command")],
  [":0\r\n", 0],
  [":-12\r\n", -12],
  ["$5\r\nhello\r\n", "b:hello"],
  ["$0\r\n\r\n", "b:"],
  ["$-1\r\n", null],
  ["*-1\r\n", null],
  ["*3\r\n$7\r\nmessage\r\n$4\r\nch:1\r\n$3\r\na\r\n\r\n", ["b:message", "b:ch:1", "b:a\r\n"]],
  ["*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n", ["b:subscribe", "b:c", 1]],
  ["*2\r\n*1\r\n:1\r\n*0\r\n", [[1], []]],
];

function plain(v: RespValue): unknown {
  if (v instanceof Uint8Array) return `b:${text(v)}`;
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

Deno.test("RespParser parses every reply type, whole and one byte at a time", () => {
  const all = utf8(REPLIES.map(([wire]) => wire).join(""));
  const whole = new RespParser();
  whole.push(all);
  for (const [wire, want] of REPLIES) assert.deepEqual(plain(whole.next()!), want, JSON.stringify(wire));
  assert.equal(whole.next(), undefined);

  const bytewise = new RespParser();
  const got: unknown[] = [];
  for (const b of all) {
    bytewise.push(Uint8Array.of(b));
    for (let v = bytewise.next(); v !== undefined; v = bytewise.next()) got.push(plain(v));
  }
  assert.deepEqual(got, REPLIES.map(([, want]) => want));
  assert.equal(bytewise.buffered, 0);
});

Deno.test("RespParser keeps large binary payloads intact across chunk boundaries and buffer growth", () => {
  const payload = new Uint8Array(200_000);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
  const wire = concatBytes(
    utf8(`*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$${payload.length}\r\n`),
    payload,
    utf8("\r\n:5\r\n"),
  );
  const p = new RespParser();
  const out: RespValue[] = [];
  for (let off = 0; off < wire.length; off += 1000) {
    p.push(wire.subarray(off, off + 1000));
    for (let v = p.next(); v !== undefined; v = p.next()) {
      out.push(Array.isArray(v) ? v.map((x) => x instanceof Uint8Array ? x.slice() : x) : v);
    }
  }
  assert.equal(out.length, 2);
  assert.deepEqual((out[0] as Uint8Array[])[2], payload);
  assert.equal(out[1], 5);
});

Deno.test("RespParser rejects malformed input with SyntaxError", () => {
  for (const bad of ["?x\r\n", ":1x\r\n", "$5\r\nhelloXX", "*99999999\r\n", "$-5\r\n", ":\r\n", "+a\rb\r\n"]) {
    const p = new RespParser();
    p.push(utf8(bad));
    assert.throws(() => p.next(), SyntaxError, JSON.stringify(bad));
  }
});

Deno.test("RespParser throws only SyntaxError on perturbed replies (seeded)", () => {
  const rng = new Rng(0x72657370);
  const valid = REPLIES.map(([wire]) => utf8(wire));
  for (let i = 0; i < 5000; i++) {
    const b = perturb(rng, rng.pick(valid));
    assertOnlyThrows(
      () => {
        const p = new RespParser();
        p.push(b);
        for (let n = 0; n < 10 && p.next() !== undefined; n++);
      },
      [SyntaxError],
      `seed 0x72657370 iteration ${i}`,
    );
  }
});

Deno.test("OutBuffer grows up to its cap and consumes from the front", () => {
  const o = new OutBuffer(100, 8);
  assert.ok(o.fits(100));
  assert.ok(!o.fits(101));
  const off = o.reserve(10);
  o.bytes.set(utf8("0123456789"), off);
  o.length += 10;
  o.consume(4);
  assert.equal(text(o.bytes.subarray(0, o.length)), "456789");
  o.clear();
  assert.equal(o.length, 0);
});

Deno.test("respText() renders replies for log lines", () => {
  assert.equal(respText([utf8("subscribe"), utf8("c"), 1]), "[subscribe, c, 1]");
  assert.equal(respText(new RespError("NOAUTH Authentication required.")), "NOAUTH Authentication required.");
});

Deno.test("parseRedisUrl() reads host, port, credentials, database and TLS", () => {
  assert.deepEqual(parseRedisUrl("redis://127.0.0.1:6379/0"), { tls: false, hostname: "127.0.0.1", port: 6379, db: 0 });
  assert.deepEqual(parseRedisUrl("redis://cache"), { tls: false, hostname: "cache", port: 6379, db: 0 });
  assert.deepEqual(parseRedisUrl("rediss://relay:p%40ss@[::1]:6380/3"), {
    tls: true,
    hostname: "::1",
    port: 6380,
    username: "relay",
    password: "p@ss",
    db: 3,
  });
  assert.deepEqual(parseRedisUrl("redis://:secret@h"), {
    tls: false,
    hostname: "h",
    port: 6379,
    password: "secret",
    db: 0,
  });
});

Deno.test("parseRedisUrl() refuses other schemes, bad databases and queries", () => {
  assert.throws(() => parseRedisUrl("http://h"), { name: "SyntaxError", message: /redis:\/\/ or rediss:\/\// });
  assert.throws(() => parseRedisUrl("redis://h/x"), { name: "SyntaxError", message: /database must be a number/ });
  assert.throws(() => parseRedisUrl("redis://h?db=1"), SyntaxError);
  assert.throws(() => parseRedisUrl("not a url"), SyntaxError);
});

Deno.test("RespParser refuses a bulk string over its cap from the header, before any of it arrives", () => {
  const p = new RespParser({ maxReplyBytes: 1024 });
  p.push(utf8("$1025\r\n"));
  assert.throws(() => p.next(), /SyntaxError: RESP: bulk string of 1025 bytes, over 1024/);
  const ok = new RespParser({ maxReplyBytes: 1024 });
  ok.push(concatBytes(utf8("$1000\r\n"), new Uint8Array(1000), utf8("\r\n")));
  assert.equal((ok.next() as Uint8Array).length, 1000);
});

Deno.test("RespParser bounds what it buffers: an array of 60 × 8 MB bulk strings fails within the cap", () => {
  const cap = 1024 * 1024;
  const p = new RespParser({ maxReplyBytes: cap });
  const chunk = new Uint8Array(256 * 1024).fill(0x61);
  // The header of a reply a hostile server could send: each element is within MAX_BULK_LEN.
  p.push(utf8(`*60\r\n$${8 * 1024 * 1024}\r\n`));
  // Elements over the parser's cap are refused at once; elements under it but adding up are refused as they arrive.
  assert.throws(() => p.next(), /over 1048576/);
  const q = new RespParser({ maxReplyBytes: cap });
  q.push(utf8("*60\r\n"));
  let thrown: Error | undefined;
  let fed = 0;
  for (let i = 0; i < 60 && thrown === undefined; i++) {
    q.push(utf8(`$${chunk.length}\r\n`));
    try {
      q.next();
      q.push(chunk);
      fed += chunk.length;
      q.next();
      q.push(utf8("\r\n"));
      q.next();
    } catch (e) {
      thrown = e as Error;
    }
  }
  assert.match(String(thrown), /SyntaxError: RESP: reply larger than 1048576 bytes/);
  assert.ok(q.buffered <= cap + chunk.length + 64, `buffered ${q.buffered}`);
  assert.ok(fed <= cap + chunk.length, `fed ${fed}`);
});

Deno.test("RespParser: many small replies in one chunk are not limited by the reply cap", () => {
  const p = new RespParser({ maxReplyBytes: 64 });
  p.push(utf8(":1\r\n".repeat(10_000)));
  let n = 0;
  while (p.next() !== undefined) n++;
  assert.equal(n, 10_000);
});
