import assert from "node:assert/strict";
import { type Command, CommandParser, literalAtEnd, type ParseEvent, type ParserLimits, type Token } from "./parser.ts";

const enc = new TextEncoder();
const LIMITS: ParserLimits = { maxLineBytes: 1024, maxLiteralBytes: 2048 };

/** Pushes `input` (in pieces) and collects events until need-more. */
function feed(p: CommandParser, ...pieces: (string | Uint8Array)[]): ParseEvent[] {
  const out: ParseEvent[] = [];
  for (const piece of pieces) {
    p.push(typeof piece === "string" ? enc.encode(piece) : piece);
    for (let i = 0; i < 1000; i++) {
      const ev = p.next();
      if (ev.type === "need-more") break;
      out.push(ev);
    }
  }
  return out;
}

function commands(events: ParseEvent[]): Command[] {
  return events.filter((e) => e.type === "command").map((e) => (e as { command: Command }).command);
}

function one(input: string, limits = LIMITS): Command {
  const events = feed(new CommandParser(limits), input);
  assert.equal(events.length, 1, JSON.stringify(events));
  assert.equal(events[0]!.type, "command", JSON.stringify(events));
  return (events[0] as { command: Command }).command;
}

const atom = (value: string): Token => ({ type: "atom", value });
const quoted = (value: string): Token => ({ type: "string", value, literal: false });
const lit = (value: string): Token => ({ type: "string", value, literal: true });
const list = (...items: Token[]): Token => ({ type: "list", items });

/** Core v2.57.0's exact command (spec §2.2 item 7, §2.3). */
const CORE_257 =
  'A0002 GETMETADATA "" (/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn /shared/vendor/deltachat/maxsmtprecipients)\r\n';
/** Core v2.59.0's exact command, with appversions. */
const CORE_259 =
  'A0002 GETMETADATA "" (/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn /shared/vendor/deltachat/maxsmtprecipients /shared/vendor/deltachat/appversions)\r\n';

Deno.test("CommandParser reads core v2.57's GETMETADATA", () => {
  const c = one(CORE_257);
  assert.equal(c.tag, "A0002");
  assert.equal(c.name, "GETMETADATA");
  assert.deepEqual(c.args, [
    quoted(""),
    list(
      atom("/shared/comment"),
      atom("/shared/admin"),
      atom("/shared/vendor/deltachat/irohrelay"),
      atom("/shared/vendor/deltachat/turn"),
      atom("/shared/vendor/deltachat/maxsmtprecipients"),
    ),
  ]);
});

Deno.test("CommandParser reads core v2.59's GETMETADATA with appversions", () => {
  const c = one(CORE_259);
  assert.equal(c.args.length, 2);
  const entries = c.args[1] as { items: Token[] };
  assert.equal(entries.items.length, 6);
  assert.deepEqual(entries.items[5], atom("/shared/vendor/deltachat/appversions"));
});

Deno.test("CommandParser reads the MailKit option order and a single unparenthesised entry", () => {
  assert.deepEqual(one('m1 getmetadata "" (MAXSIZE 1024 DEPTH infinity) (/private)\r\n').args, [
    quoted(""),
    list(atom("MAXSIZE"), atom("1024"), atom("DEPTH"), atom("infinity")),
    list(atom("/private")),
  ]);
  const c = one("t GETMETADATA (DEPTH 1) INBOX /shared/comment\r\n");
  assert.equal(c.name, "GETMETADATA");
  assert.deepEqual(c.args, [list(atom("DEPTH"), atom("1")), atom("INBOX"), atom("/shared/comment")]);
});

Deno.test("CommandParser undoes quoted-string escapes and reads UTF-8", () => {
  const c = one('a1 LOGIN "al\\"ice" "p\\\\w Grüße"\r\n');
  assert.deepEqual(c.args, [quoted('al"ice'), quoted("p\\w Grüße")]);
});

Deno.test("CommandParser asks for a synchronizing literal with continue", () => {
  const p = new CommandParser(LIMITS);
  assert.deepEqual(feed(p, "a1 LOGIN {5}\r\n"), [{ type: "continue" }]);
  const ev = feed(p, "alice {6}\r\n");
  assert.deepEqual(ev, [{ type: "continue" }]);
  const done = commands(feed(p, "s3cr\r\n\r\n"));
  assert.deepEqual(done, [{ tag: "a1", name: "LOGIN", args: [lit("alice"), lit("s3cr\r\n")] }]);
});

Deno.test("CommandParser takes {n+} and ~{n} literals without continue", () => {
  const events = feed(
    new CommandParser(LIMITS),
    "a SETMETADATA INBOX (/private/x {3+}\r\nabc /private/y ~{2}\r\nhi)\r\n",
  );
  assert.equal(events.filter((e) => e.type === "continue").length, 1, "only the synchronizing ~{2} asks");
  const [c] = commands(events);
  assert.deepEqual(c!.args, [atom("INBOX"), list(atom("/private/x"), lit("abc"), atom("/private/y"), lit("hi"))]);
});

Deno.test("CommandParser carries non-ASCII literal bytes through as UTF-8", () => {
  const bytes = enc.encode("Grüße");
  const c = commands(feed(new CommandParser(LIMITS), `a LOGIN u {${bytes.length}+}\r\n`, bytes, "\r\n"))[0]!;
  assert.deepEqual(c.args, [atom("u"), lit("Grüße")]);
});

Deno.test("CommandParser gives the same commands when fed one byte at a time", () => {
  const input = enc.encode(`a1 LOGIN {5}\r\nalice "pw"\r\n${CORE_259}A3 SELECT "INBOX"\r\n`);
  const whole = commands(feed(new CommandParser(LIMITS), input));
  const p = new CommandParser(LIMITS);
  const bytewise = commands(feed(p, ...Array.from(input, (b) => Uint8Array.of(b))));
  assert.equal(whole.length, 3);
  assert.deepEqual(bytewise, whole);
});

Deno.test("CommandParser returns pipelined commands one by one", () => {
  const cs = commands(feed(new CommandParser(LIMITS), "a NOOP\r\nb CAPABILITY\r\nc LOGOUT\r\n"));
  assert.deepEqual(cs.map((c) => c.tag + " " + c.name), ["a NOOP", "b CAPABILITY", "c LOGOUT"]);
});

Deno.test("CommandParser accepts bare LF, repeated spaces, and ignores empty lines", () => {
  const cs = commands(feed(new CommandParser(LIMITS), "\r\n\na  SELECT   INBOX \n"));
  assert.deepEqual(cs, [{ tag: "a", name: "SELECT", args: [atom("INBOX")] }]);
});

Deno.test("CommandParser reads NIL, nested lists, flags and FETCH sections as atoms", () => {
  const c = one("a UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)] (\\Seen NIL))\r\n");
  assert.equal(c.name, "UID");
  assert.deepEqual(c.args, [
    atom("FETCH"),
    atom("1:*"),
    list(
      atom("UID"),
      atom("FLAGS"),
      atom("BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)]"),
      list(atom("\\Seen"), atom("NIL")),
    ),
  ]);
});

Deno.test("CommandParser reports a line over the limit with its tag and resynchronises", () => {
  const p = new CommandParser(LIMITS);
  const events = feed(p, `x1 NOOP ${"a".repeat(2000)}\r\ny2 NOOP\r\n`);
  assert.deepEqual(events[0], { type: "error", tag: "x1", message: "Line too long", fatal: false });
  assert.deepEqual(commands(events), [{ tag: "y2", name: "NOOP", args: [] }]);
});

Deno.test("CommandParser rejects an overlong line before its end arrives, without buffering it", () => {
  const p = new CommandParser(LIMITS);
  const first = feed(p, `x1 NOOP ${"a".repeat(1500)}`);
  assert.deepEqual(first, [{ type: "error", tag: "x1", message: "Line too long", fatal: false }]);
  assert.equal(p.buffered, 0, "skipped bytes are dropped");
  const rest = feed(p, "b".repeat(100_000), "\r\nz NOOP\r\n");
  assert.deepEqual(rest, [{ type: "command", command: { tag: "z", name: "NOOP", args: [] } }]);
});

Deno.test("CommandParser refuses a synchronizing literal over the limit and goes on", () => {
  const p = new CommandParser(LIMITS);
  const events = feed(p, "a APPEND INBOX {999999999}\r\nb NOOP\r\n");
  assert.equal(events[0]!.type, "error");
  assert.deepEqual(events[0], {
    type: "error",
    tag: "a",
    message: "Literal too large: at most 2048 bytes",
    fatal: false,
  });
  assert.deepEqual(commands(events), [{ tag: "b", name: "NOOP", args: [] }]);
});

Deno.test("CommandParser counts all literals of a command against the limit", () => {
  const p = new CommandParser({ maxLineBytes: 1024, maxLiteralBytes: 10 });
  const events = feed(p, "a LOGIN {6+}\r\n123456 {6+}\r\n123456\r\n");
  assert.equal(events[0]!.type, "error");
  assert.equal((events[0] as { fatal: boolean }).fatal, false, "a small {n+} can be skipped");
});

Deno.test("CommandParser gives up on a huge non-synchronizing literal", () => {
  const p = new CommandParser(LIMITS);
  const events = feed(p, "a APPEND INBOX {4294967295+}\r\nxxxx");
  assert.deepEqual(events, [{
    type: "error",
    tag: "a",
    message: "Literal too large: at most 2048 bytes",
    fatal: true,
  }]);
  assert.deepEqual(feed(p, "b NOOP\r\n"), [], "nothing more after a fatal error");
});

Deno.test("CommandParser reports garbage without a tag", () => {
  const events = feed(new CommandParser(LIMITS), Uint8Array.of(0x00, 0xff, 0x16, 0x03, 0x01, 0x0a), "(x)\r\n");
  assert.deepEqual(events, [
    { type: "error", tag: null, message: "Invalid tag", fatal: false },
    { type: "error", tag: null, message: "Invalid tag", fatal: false },
  ]);
});

Deno.test("CommandParser reports syntax errors with the tag", () => {
  const cases: [string, string][] = [
    ["a\r\n", "Missing command"],
    ['a LOGIN "open\r\n', "Unterminated quoted string"],
    ['a LOGIN "bad\\escape"\r\n', "Invalid escape in quoted string"],
    ["a LIST (\r\n", "Unterminated list"],
    ["a FETCH 1 BODY[\r\n", "Unterminated ["],
    ["a NOOP {x\r\n", "Unexpected character 0x7b"],
  ];
  for (const [input, message] of cases) {
    assert.deepEqual(
      feed(new CommandParser(LIMITS), input),
      [{ type: "error", tag: "a", message, fatal: false }],
      input,
    );
  }
});

Deno.test("CommandParser returns a raw line after expectLine()", () => {
  const p = new CommandParser(LIMITS);
  assert.deepEqual(commands(feed(p, "a AUTHENTICATE PLAIN\r\n")).length, 1);
  p.expectLine();
  assert.deepEqual(feed(p, "AGFsaWNlAHB3\r\n"), [{ type: "line", text: "AGFsaWNlAHB3" }]);
  assert.equal(commands(feed(p, "b NOOP\r\n")).length, 1);
});

Deno.test("CommandParser hands back unconsumed bytes with takeBuffered()", () => {
  const p = new CommandParser(LIMITS);
  p.push(enc.encode("a NOOP\r\nb APPEND INBOX {3}\r\nabc\r\n"));
  assert.equal(p.next().type, "command");
  assert.equal(p.idle, true);
  assert.equal(new TextDecoder().decode(p.takeBuffered()), "b APPEND INBOX {3}\r\nabc\r\n");
  assert.equal(p.buffered, 0);
});

Deno.test("literalAtEnd() finds {n}, {n+} and ~{n} only at the end", () => {
  assert.deepEqual(literalAtEnd(enc.encode("a LOGIN {12}")), { size: 12, sync: true, start: 8 });
  assert.deepEqual(literalAtEnd(enc.encode("a LOGIN {0+}")), { size: 0, sync: false, start: 8 });
  assert.deepEqual(literalAtEnd(enc.encode("a APPEND x ~{7}")), { size: 7, sync: true, start: 11 });
  assert.equal(literalAtEnd(enc.encode("a {12} x")), null);
  assert.equal(literalAtEnd(enc.encode("a {}")), null);
  assert.equal(literalAtEnd(enc.encode("a {1x}")), null);
  assert.equal(literalAtEnd(enc.encode("{99999999999}"))!.size, Number.MAX_SAFE_INTEGER, "11 digits is never small");
});

Deno.test("CommandParser only ever returns events on seeded random input", () => {
  // xorshift32: reproducible without a dependency.
  let s = 0x9e3779b9;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
  const alphabet = enc.encode('ab1 ()"\\{}+~*%\r\n[]NIL\x00\xff');
  for (let round = 0; round < 300; round++) {
    const p = new CommandParser({ maxLineBytes: 64, maxLiteralBytes: 64 });
    const len = Math.floor(rnd() * 200);
    const bytes = Uint8Array.from({ length: len }, () => alphabet[Math.floor(rnd() * alphabet.length)]!);
    let events = 0;
    for (let off = 0; off < len;) {
      const n = 1 + Math.floor(rnd() * 16);
      p.push(bytes.subarray(off, off + n));
      off += n;
      for (let i = 0; i < 1000; i++) {
        const ev = p.next();
        if (ev.type === "need-more") break;
        if (ev.type === "line") assert.fail("no line without expectLine()");
        events++;
      }
    }
    assert.ok(events <= len + 1);
  }
});

Deno.test("CommandParser assembles a 60 KB line sent one byte per read with linear copying", () => {
  const p = new CommandParser({ maxLineBytes: 64 * 1024, maxLiteralBytes: 1024 });
  const line = enc.encode(`a1 NOOP ${"x".repeat(60 * 1024)}\r\n`);
  let cmd: ParseEvent | null = null;
  for (let i = 0; i < line.length; i++) {
    p.push(line.subarray(i, i + 1));
    const ev = p.next();
    if (ev.type !== "need-more") cmd = ev;
  }
  assert.equal(cmd?.type, "command");
  // Re-copying the whole buffer per read, as before, copied ~1.9 GB here; now each byte about once or twice.
  assert.ok(p.bytesCopied < 3 * line.length, `copied ${p.bytesCopied} bytes for a ${line.length}-byte line`);
});

Deno.test("CommandParser holds literal memory for bytes that arrived, not for the size announced", () => {
  const p = new CommandParser({ maxLineBytes: 1024, maxLiteralBytes: 1 << 20 });
  assert.equal(feed(p, "a1 LOGIN {1000000}\r\n")[0]?.type, "continue");
  const before = p.bytesCopied;
  feed(p, "abc");
  assert.equal(p.midCommand, true);
  // Allocating what {1000000} announced, as before, held a megabyte here.
  assert.ok(p.heldBytes < 4096, `holds ${p.heldBytes} bytes after 3 of 1000000 arrived`);
  const rest = new Uint8Array(1_000_000 - 3).fill(0x61);
  const evs = feed(p, rest, " pw\r\n");
  assert.equal(evs[0]?.type, "command");
  const cmd = (evs[0] as { command: Command }).command;
  assert.equal(cmd.args[0]?.type === "string" && cmd.args[0].value.length, 1_000_000);
  assert.ok(p.bytesCopied - before >= 1_000_000);
});
