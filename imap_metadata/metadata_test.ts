import assert from "node:assert/strict";
import {
  entryNameProblem,
  type GetMetadataRequest,
  lookupMetadata,
  parseGetMetadata,
  parseSetMetadata,
} from "./metadata.ts";
import { CommandParser, type Token } from "./parser.ts";

/** Arguments of one command line, through the real parser. */
function args(line: string): Token[] {
  const p = new CommandParser({ maxLineBytes: 8192, maxLiteralBytes: 8192 });
  p.push(new TextEncoder().encode(line + "\r\n"));
  const ev = p.next();
  assert.equal(ev.type, "command", JSON.stringify(ev));
  return (ev as { command: { args: Token[] } }).command.args;
}

const STORE = new Map([
  ["/shared/comment", "Chatmail server"],
  ["/shared/admin", "mailto:root@example.org"],
  ["/shared/vendor/deltachat/irohrelay", "http://127.0.0.1:3340/"],
  ["/shared/vendor/deltachat/x/deep", "d"],
  ["/shared/vendor/other/motd", "Grüße"],
]);

function req(r: Partial<GetMetadataRequest> & { entries: string[] }): GetMetadataRequest {
  return { mailbox: "", depth: "0", ...r };
}

Deno.test("parseGetMetadata() reads every form of RFC 5464 §4.2 and the MailKit order", () => {
  const table: [string, GetMetadataRequest][] = [
    ['a GETMETADATA "" (/shared/comment /shared/admin)', req({ entries: ["/shared/comment", "/shared/admin"] })],
    ['a GETMETADATA "" /shared/comment', req({ entries: ["/shared/comment"] })],
    ["a GETMETADATA INBOX /private/comment", req({ mailbox: "INBOX", entries: ["/private/comment"] })],
    ['a GETMETADATA (MAXSIZE 1024) "" (/shared/comment)', req({ entries: ["/shared/comment"], maxSize: 1024 })],
    ['a GETMETADATA (DEPTH infinity) "" (/shared)', req({ entries: ["/shared"], depth: "infinity" })],
    ['a GETMETADATA (MAXSIZE 5 DEPTH 1) "" /shared', req({ entries: ["/shared"], depth: "1", maxSize: 5 })],
    [
      'a GETMETADATA "" (MAXSIZE 1024 DEPTH infinity) (/private)',
      req({ entries: ["/private"], depth: "infinity", maxSize: 1024 }),
    ],
    ['a GETMETADATA (DEPTH 1) "" (MAXSIZE 9) (/shared)', req({ entries: ["/shared"], depth: "1", maxSize: 9 })],
    [
      'a GETMETADATA "" ("/shared/comment" {13}\r\n/shared/admin)',
      req({ entries: ["/shared/comment", "/shared/admin"] }),
    ],
  ];
  for (const [line, want] of table) {
    const p = new CommandParser({ maxLineBytes: 8192, maxLiteralBytes: 8192 });
    p.push(new TextEncoder().encode(line + "\r\n"));
    let ev = p.next();
    if (ev.type === "continue") ev = p.next();
    assert.equal(ev.type, "command", line);
    assert.deepEqual(parseGetMetadata((ev as { command: { args: Token[] } }).command.args), want, line);
  }
});

Deno.test("parseGetMetadata() rejects malformed arguments with SyntaxError", () => {
  const bad: [string, RegExp][] = [
    ['a GETMETADATA ""', /Missing entry names/],
    ["a GETMETADATA", /Missing mailbox/],
    ['a GETMETADATA "" ()', /Empty entry list/],
    ['a GETMETADATA (MAXSIZE x) "" /shared', /MAXSIZE needs a number/],
    ['a GETMETADATA (DEPTH 2) "" /shared', /DEPTH must be 0, 1 or infinity/],
    ['a GETMETADATA (DEPTH 1) "" (DEPTH 0) /shared', /DEPTH given twice/],
    ['a GETMETADATA (MAXSIZE 1 FOO 2) "" /shared', /Unknown GETMETADATA option FOO/],
    ['a GETMETADATA "" /shared /private', /Too many arguments/],
    ['a GETMETADATA "" /comment', /start with \/private or \/shared/],
    ['a GETMETADATA "" /shared//x', /must not contain \/\//],
    ['a GETMETADATA "" /shared/x/', /must not end with \//],
    ['a GETMETADATA "" "/shared/*"', /ASCII without \*/],
    ['a GETMETADATA "" "/shared/Grüße"', /ASCII without \*/],
    ['a GETMETADATA "" ((/shared))', /must be strings/],
  ];
  for (const [line, re] of bad) {
    assert.throws(
      () => parseGetMetadata(args(line)),
      (e: unknown) => e instanceof SyntaxError && re.test(e.message),
      line,
    );
  }
});

Deno.test("entryNameProblem() accepts /shared, /private and their children in any case", () => {
  for (const ok of ["/shared", "/private", "/Shared/Comment", "/private/vendor/vendor.dovecot/x"]) {
    assert.equal(entryNameProblem(ok), null, ok);
  }
  assert.match(entryNameProblem("/shared/a\tb")!, /control/);
});

Deno.test("lookupMetadata() answers core's list with values and NIL in request order", () => {
  const r = lookupMetadata(
    STORE,
    req({ entries: ["/shared/comment", "/shared/vendor/deltachat/turn", "/shared/vendor/deltachat/irohrelay"] }),
  );
  assert.deepEqual(r, {
    entries: [
      { name: "/shared/comment", value: "Chatmail server" },
      { name: "/shared/vendor/deltachat/turn", value: null },
      { name: "/shared/vendor/deltachat/irohrelay", value: "http://127.0.0.1:3340/" },
    ],
  });
});

Deno.test("lookupMetadata() matches names case-insensitively and echoes the client's spelling", () => {
  const r = lookupMetadata(STORE, req({ entries: ["/SHARED/Comment", "/shared/comment"] }));
  assert.deepEqual(r.entries, [{ name: "/SHARED/Comment", value: "Chatmail server" }], "duplicates collapse");
});

Deno.test("lookupMetadata() expands DEPTH 1 to direct children and DEPTH infinity to the subtree", () => {
  const d1 = lookupMetadata(STORE, req({ entries: ["/shared/vendor/deltachat"], depth: "1" }));
  assert.deepEqual(d1.entries, [{ name: "/shared/vendor/deltachat/irohrelay", value: "http://127.0.0.1:3340/" }]);
  const inf = lookupMetadata(STORE, req({ entries: ["/shared/vendor"], depth: "infinity" }));
  assert.deepEqual(inf.entries.map((e) => e.name), [
    "/shared/vendor/deltachat/irohrelay",
    "/shared/vendor/deltachat/x/deep",
    "/shared/vendor/other/motd",
  ]);
  const leaf = lookupMetadata(STORE, req({ entries: ["/shared/comment"], depth: "infinity" }));
  assert.deepEqual(leaf.entries, [{ name: "/shared/comment", value: "Chatmail server" }]);
  const none = lookupMetadata(STORE, req({ entries: ["/private"], depth: "infinity" }));
  assert.deepEqual(none.entries, [{ name: "/private", value: null }], "a listed name with nothing under it is NIL");
});

Deno.test("lookupMetadata() leaves out values over MAXSIZE and reports the largest", () => {
  const r = lookupMetadata(STORE, req({ entries: ["/shared"], depth: "infinity", maxSize: 6 }));
  assert.deepEqual(r.entries, [{ name: "/shared/vendor/deltachat/x/deep", value: "d" }]);
  assert.equal(r.longEntries, "mailto:root@example.org".length);
  const bytes = lookupMetadata(STORE, req({ entries: ["/shared/vendor/other/motd"], maxSize: 5 }));
  assert.deepEqual(bytes, { entries: [], longEntries: 7 }, "MAXSIZE counts UTF-8 octets");
  const nil = lookupMetadata(STORE, req({ entries: ["/shared/nothing"], maxSize: 0 }));
  assert.deepEqual(nil, { entries: [{ name: "/shared/nothing", value: null }] }, "NIL has no size");
});

Deno.test("parseSetMetadata() reads quoted, literal and NIL values", () => {
  const p = new CommandParser({ maxLineBytes: 8192, maxLiteralBytes: 8192 });
  p.push(
    new TextEncoder().encode(
      'a SETMETADATA INBOX (/private/devicetoken "openpgp:abc" /shared/x NIL /private/y {2+}\r\nhi)\r\n',
    ),
  );
  const ev = p.next() as { command: { args: Token[] } };
  assert.deepEqual(parseSetMetadata(ev.command.args), {
    mailbox: "INBOX",
    values: [
      { name: "/private/devicetoken", value: "openpgp:abc" },
      { name: "/shared/x", value: null },
      { name: "/private/y", value: "hi" },
    ],
  });
});

Deno.test("parseSetMetadata() rejects malformed arguments", () => {
  for (
    const line of [
      'a SETMETADATA "" /shared/comment',
      'a SETMETADATA "" (/shared/comment)',
      'a SETMETADATA "" (/shared/comment foo)',
      'a SETMETADATA "" ()',
    ]
  ) {
    assert.throws(() => parseSetMetadata(args(line)), SyntaxError, line);
  }
});
