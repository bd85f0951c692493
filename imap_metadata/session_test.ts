import assert from "node:assert/strict";
import { encodeReplies } from "./encoder.ts";
import { CommandParser } from "./parser.ts";
import {
  greeting,
  initialState,
  listMatch,
  type SessionConfig,
  type SessionInput,
  type SessionState,
  step,
} from "./session.ts";

const URL = "http://127.0.0.1:3340/";
const ENTRIES = new Map([
  ["/shared/vendor/deltachat/irohrelay", URL],
  ["/shared/comment", "test relay"],
  ["/shared/vendor/example/long", "x".repeat(2000)],
]);
const ANY: SessionConfig = { entries: ENTRIES, login: "any", maxErrors: 5 };
const USERS: SessionConfig = { ...ANY, login: "users" };

/**
 * Runs client text through the real parser and the reducer, answering
 * password checks with `passwords`, and returns the server's wire text.
 */
function converse(cfg: SessionConfig, client: string, passwords: Record<string, string> = {}, state = initialState()) {
  const p = new CommandParser({ maxLineBytes: 1024, maxLiteralBytes: 1024 });
  let s: SessionState = state;
  let wire = "";
  let closed = false;
  p.push(new TextEncoder().encode(client));
  for (let i = 0; i < 100 && !closed; i++) {
    const ev = p.next();
    if (ev.type === "need-more") break;
    const input: SessionInput = ev.type === "command"
      ? { type: "command", command: ev.command }
      : ev.type === "line"
      ? { type: "line", text: ev.text }
      : ev.type === "continue"
      ? { type: "continue" }
      : { type: "parse-error", tag: ev.tag, message: ev.message, fatal: ev.fatal };
    let out = step(cfg, s, input);
    wire += new TextDecoder().decode(encodeReplies(out.replies));
    if (out.checkLogin) {
      const ok = passwords[out.checkLogin.user] === out.checkLogin.password;
      out = step(cfg, out.state, { type: "login-result", ok });
      wire += new TextDecoder().decode(encodeReplies(out.replies));
    }
    if (out.expectLine) p.expectLine();
    s = out.state;
    closed = out.close;
  }
  return { wire, state: s, closed };
}

const LOGGED_IN: SessionState = { ...initialState(), phase: "authenticated" };
const SELECTED: SessionState = { ...initialState(), phase: "selected", selected: { name: "INBOX", readOnly: false } };

Deno.test("greeting() advertises pre-login capabilities without METADATA", () => {
  assert.equal(
    new TextDecoder().decode(encodeReplies([greeting()])),
    "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] IMAP METADATA discovery ready\r\n",
  );
});

Deno.test("step() follows core's transcript of spec §2.2", () => {
  const { wire } = converse(
    ANY,
    'A0001 LOGIN "alice@example.org" "secret"\r\n' +
      'A0002 GETMETADATA "" (/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn /shared/vendor/deltachat/maxsmtprecipients /shared/vendor/deltachat/appversions)\r\n' +
      'A0003 SELECT "INBOX"\r\nA0004 IDLE\r\nDONE\r\n',
  );
  assert.equal(
    wire,
    "A0001 OK [CAPABILITY IMAP4rev1 IDLE UNSELECT METADATA] LOGIN completed\r\n" +
      `* METADATA "" (/shared/comment "test relay" /shared/admin NIL /shared/vendor/deltachat/irohrelay "${URL}" /shared/vendor/deltachat/turn NIL /shared/vendor/deltachat/maxsmtprecipients NIL /shared/vendor/deltachat/appversions NIL)\r\n` +
      "A0002 OK GETMETADATA completed\r\n" +
      "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n" +
      "* OK [PERMANENTFLAGS ()] No permanent flags\r\n" +
      "* 0 EXISTS\r\n* 0 RECENT\r\n" +
      "* OK [UIDVALIDITY 1] UIDs valid\r\n" +
      "* OK [UIDNEXT 1] Predicted next UID\r\n" +
      "A0003 OK [READ-WRITE] SELECT completed\r\n" +
      "+ idling\r\nA0004 OK IDLE terminated\r\n",
  );
});

/** One command in a given state → exact reply text. */
const TABLE: {
  name: string;
  cfg?: SessionConfig;
  state?: SessionState;
  input: string;
  wire: string;
  close?: boolean;
}[] = [
  {
    name: "CAPABILITY before login",
    input: "a CAPABILITY\r\n",
    wire: "* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\na OK CAPABILITY completed\r\n",
  },
  {
    name: "CAPABILITY after login",
    state: LOGGED_IN,
    input: "a capability\r\n",
    wire: "* CAPABILITY IMAP4rev1 IDLE UNSELECT METADATA\r\na OK CAPABILITY completed\r\n",
  },
  { name: "NOOP", input: "a NOOP\r\n", wire: "a OK NOOP completed\r\n" },
  { name: "LOGOUT", input: "a LOGOUT\r\n", wire: "* BYE Logging out\r\na OK LOGOUT completed\r\n", close: true },
  {
    name: "LOGIN with atoms",
    input: "a LOGIN alice pw\r\n",
    wire: "a OK [CAPABILITY IMAP4rev1 IDLE UNSELECT METADATA] LOGIN completed\r\n",
  },
  {
    name: "LOGIN with a literal",
    input: "a LOGIN {5}\r\nalice pw\r\n",
    wire: "+ Ready for literal data\r\na OK [CAPABILITY IMAP4rev1 IDLE UNSELECT METADATA] LOGIN completed\r\n",
  },
  { name: "LOGIN with one argument", input: "a LOGIN alice\r\n", wire: "a BAD LOGIN wants user name and password\r\n" },
  { name: "LOGIN twice", state: LOGGED_IN, input: "a LOGIN u p\r\n", wire: "a BAD Already logged in\r\n" },
  {
    name: "users: right password",
    cfg: USERS,
    input: 'a LOGIN alice "s3cret"\r\n',
    wire: "a OK [CAPABILITY IMAP4rev1 IDLE UNSELECT METADATA] LOGIN completed\r\n",
  },
  {
    name: "users: wrong password",
    cfg: USERS,
    input: "a LOGIN alice nope\r\n",
    wire: "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n",
  },
  {
    name: "users: unknown user",
    cfg: USERS,
    input: "a LOGIN bob s3cret\r\n",
    wire: "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n",
  },
  {
    name: "AUTHENTICATE PLAIN with continuation",
    cfg: USERS,
    input: `a AUTHENTICATE PLAIN\r\n${btoa("\0alice\0s3cret")}\r\n`,
    wire: "+ \r\na OK [CAPABILITY IMAP4rev1 IDLE UNSELECT METADATA] AUTHENTICATE completed\r\n",
  },
  {
    name: "AUTHENTICATE PLAIN with SASL-IR",
    cfg: USERS,
    input: `a AUTHENTICATE plain ${btoa("alice\0alice\0s3cret")}\r\n`,
    wire: "a OK [CAPABILITY IMAP4rev1 IDLE UNSELECT METADATA] AUTHENTICATE completed\r\n",
  },
  {
    name: "AUTHENTICATE PLAIN wrong password",
    cfg: USERS,
    input: `a AUTHENTICATE PLAIN ${btoa("\0alice\0x")}\r\n`,
    wire: "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n",
  },
  {
    name: "AUTHENTICATE cancelled",
    input: "a AUTHENTICATE PLAIN\r\n*\r\n",
    wire: "+ \r\na BAD Authentication cancelled\r\n",
  },
  { name: "AUTHENTICATE bad base64", input: "a AUTHENTICATE PLAIN\r\n!!!\r\n", wire: "+ \r\na BAD Invalid base64\r\n" },
  {
    name: "AUTHENTICATE as someone else",
    input: `a AUTHENTICATE PLAIN ${btoa("root\0alice\0pw")}\r\n`,
    wire: "a NO [AUTHORIZATIONFAILED] Cannot act as another user\r\n",
  },
  {
    name: "AUTHENTICATE other mechanism",
    input: "a AUTHENTICATE XOAUTH2 abc\r\n",
    wire: "a NO [CANNOT] Unsupported mechanism: only PLAIN\r\n",
  },
  { name: "STARTTLS", input: "a STARTTLS\r\n", wire: "a BAD STARTTLS is not offered: connect with implicit TLS\r\n" },
  { name: "GETMETADATA before login", input: 'a GETMETADATA "" /shared/comment\r\n', wire: "a BAD Log in first\r\n" },
  {
    name: "GETMETADATA single entry",
    state: LOGGED_IN,
    input: 'a GETMETADATA "" /shared/vendor/deltachat/irohrelay\r\n',
    wire: `* METADATA "" (/shared/vendor/deltachat/irohrelay "${URL}")\r\na OK GETMETADATA completed\r\n`,
  },
  {
    name: "GETMETADATA in selected state",
    state: SELECTED,
    input: 'a GETMETADATA "" (/shared/comment)\r\n',
    wire: '* METADATA "" (/shared/comment "test relay")\r\na OK GETMETADATA completed\r\n',
  },
  {
    name: "GETMETADATA nothing to return",
    state: LOGGED_IN,
    input: 'a GETMETADATA (MAXSIZE 10) "" (/shared/vendor/example/long)\r\n',
    wire: "a OK [METADATA LONGENTRIES 2000] GETMETADATA completed\r\n",
  },
  {
    name: "GETMETADATA MailKit order with DEPTH",
    state: LOGGED_IN,
    input: 'a GETMETADATA "" (MAXSIZE 1024 DEPTH infinity) (/shared/vendor)\r\n',
    wire:
      `* METADATA "" (/shared/vendor/deltachat/irohrelay "${URL}")\r\na OK [METADATA LONGENTRIES 2000] GETMETADATA completed\r\n`,
  },
  {
    name: "GETMETADATA INBOX has no entries",
    state: LOGGED_IN,
    input: "a GETMETADATA INBOX (/private/comment)\r\n",
    wire: '* METADATA "INBOX" (/private/comment NIL)\r\na OK GETMETADATA completed\r\n',
  },
  {
    name: "GETMETADATA unknown mailbox",
    state: LOGGED_IN,
    input: "a GETMETADATA Junk (/private/comment)\r\n",
    wire: "a NO [NONEXISTENT] Mailbox does not exist\r\n",
  },
  {
    name: "GETMETADATA bad entry",
    state: LOGGED_IN,
    input: 'a GETMETADATA "" (/comment)\r\n',
    wire: "a BAD Entry names start with /private or /shared\r\n",
  },
  {
    name: "SETMETADATA on a server entry",
    state: LOGGED_IN,
    input: 'a SETMETADATA "" (/shared/vendor/deltachat/irohrelay "http://evil/")\r\n',
    wire: "a NO [NOPERM] Shared entries are read-only\r\n",
  },
  {
    name: "SETMETADATA devicetoken",
    state: SELECTED,
    input: 'a SETMETADATA "INBOX" (/private/devicetoken "openpgp:x")\r\n',
    wire: "a NO [METADATA NOPRIVATE] Private entries are not supported\r\n",
  },
  {
    name: "SETMETADATA with a literal value",
    state: LOGGED_IN,
    input: 'a SETMETADATA "" (/shared/comment {3}\r\nabc)\r\n',
    wire: "+ Ready for literal data\r\na NO [NOPERM] Shared entries are read-only\r\n",
  },
  {
    name: "EXAMINE is read-only",
    state: LOGGED_IN,
    input: "a EXAMINE inbox\r\n",
    wire:
      "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* OK [PERMANENTFLAGS ()] No permanent flags\r\n* 0 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n* OK [UIDNEXT 1] Predicted next UID\r\na OK [READ-ONLY] EXAMINE completed\r\n",
  },
  {
    name: "SELECT another mailbox",
    state: SELECTED,
    input: "a SELECT Junk\r\n",
    wire: "a NO [NONEXISTENT] Mailbox does not exist\r\n",
  },
  { name: "SELECT before login", input: "a SELECT INBOX\r\n", wire: "a BAD Log in first\r\n" },
  {
    name: 'LIST "" ""',
    state: LOGGED_IN,
    input: 'a LIST "" ""\r\n',
    wire: '* LIST (\\Noselect) "/" ""\r\na OK LIST completed\r\n',
  },
  {
    name: 'LIST "" "*"',
    state: LOGGED_IN,
    input: 'a LIST "" "*"\r\n',
    wire: '* LIST (\\HasNoChildren) "/" "INBOX"\r\na OK LIST completed\r\n',
  },
  { name: "LIST no match", state: LOGGED_IN, input: 'a LIST "" Sent\r\n', wire: "a OK LIST completed\r\n" },
  {
    name: "LIST extended",
    state: LOGGED_IN,
    input: 'a LIST (SUBSCRIBED) "" "%" RETURN (CHILDREN)\r\n',
    wire: '* LIST (\\HasNoChildren) "/" "INBOX"\r\na OK LIST completed\r\n',
  },
  {
    name: "STATUS",
    state: LOGGED_IN,
    input: "a STATUS INBOX (UIDNEXT MESSAGES)\r\n",
    wire: '* STATUS "INBOX" (UIDNEXT 1 MESSAGES 0)\r\na OK STATUS completed\r\n',
  },
  {
    name: "STATUS unknown item",
    state: LOGGED_IN,
    input: "a STATUS INBOX (FOO)\r\n",
    wire: "a BAD Unknown STATUS item FOO\r\n",
  },
  {
    name: "UID FETCH on the empty INBOX",
    state: SELECTED,
    input: "a UID FETCH 1:* (FLAGS BODY.PEEK[])\r\n",
    wire: "a OK UID FETCH completed\r\n",
  },
  {
    name: "UID SEARCH",
    state: SELECTED,
    input: "a UID SEARCH ALL\r\n",
    wire: "* SEARCH\r\na OK UID SEARCH completed\r\n",
  },
  {
    name: "FETCH outside selected state",
    state: LOGGED_IN,
    input: "a FETCH 1 FLAGS\r\n",
    wire: "a BAD Select a mailbox first\r\n",
  },
  { name: "CLOSE", state: SELECTED, input: "a CLOSE\r\n", wire: "a OK CLOSE completed\r\n" },
  {
    name: "APPEND",
    state: LOGGED_IN,
    input: "a APPEND INBOX {3}\r\nabc\r\n",
    wire: "+ Ready for literal data\r\na NO [CANNOT] This server stores no mail\r\n",
  },
  {
    name: "IDLE expects DONE",
    state: SELECTED,
    input: "a IDLE\r\nnope\r\n",
    wire: "+ idling\r\na BAD Expected DONE\r\n",
  },
  { name: "unknown command", input: "a XYZZY\r\n", wire: "a BAD Unknown command\r\n" },
  {
    name: "ID is not offered",
    state: LOGGED_IN,
    input: 'a ID ("name" "Delta Chat")\r\n',
    wire: "a BAD Unknown command\r\n",
  },
  { name: "untagged garbage", input: "\x16\x03\x01\r\n", wire: "* BAD Invalid tag\r\n" },
  {
    name: "literal over the limit",
    input: "a LOGIN {5000}\r\n",
    wire: "a BAD Literal too large: at most 1024 bytes\r\n",
  },
];

Deno.test("step() answers each command as in the table", () => {
  for (const t of TABLE) {
    const { wire, closed } = converse(t.cfg ?? ANY, t.input, { alice: "s3cret" }, t.state ?? initialState());
    assert.equal(wire, t.wire, t.name);
    assert.equal(closed, t.close ?? false, t.name);
  }
});

Deno.test("step() moves between phases on login, SELECT, CLOSE", () => {
  let r = converse(ANY, "a LOGIN u p\r\n");
  assert.equal(r.state.phase, "authenticated");
  r = converse(ANY, "b SELECT INBOX\r\n", {}, r.state);
  assert.equal(r.state.phase, "selected");
  assert.deepEqual(r.state.selected, { name: "INBOX", readOnly: false });
  r = converse(ANY, "c UNSELECT\r\n", {}, r.state);
  assert.equal(r.state.phase, "authenticated");
  r = converse(USERS, "a LOGIN alice bad\r\n", { alice: "good" });
  assert.equal(r.state.phase, "not-authenticated");
});

Deno.test("step() closes after too many consecutive BAD replies", () => {
  const { wire, closed } = converse(ANY, "a X\r\nb X\r\nc X\r\nd X\r\ne X\r\nf NOOP\r\n");
  assert.equal(closed, true);
  assert.ok(wire.endsWith("e BAD Unknown command\r\n* BYE Too many invalid commands\r\n"), wire);
  assert.ok(!wire.includes("f OK"));
});

Deno.test("step() resets the error count after a good command", () => {
  const { closed } = converse(ANY, "a X\r\nb X\r\nc X\r\nd X\r\nok NOOP\r\ne X\r\nf X\r\n");
  assert.equal(closed, false);
});

Deno.test("step() says BYE on timeouts and fatal parse errors", () => {
  const login = step(ANY, initialState(), { type: "timeout", reason: "login" });
  assert.deepEqual(login.replies, [{ type: "untagged", status: "BYE", text: "Login timeout" }]);
  assert.equal(login.close, true);
  const idle = step(ANY, LOGGED_IN, { type: "timeout", reason: "idle" });
  assert.deepEqual(idle.replies, [{ type: "untagged", status: "BYE", text: "Autologout; idle for too long" }]);
  const fatal = step(ANY, LOGGED_IN, { type: "parse-error", tag: "a", message: "Literal too large", fatal: true });
  assert.equal(fatal.close, true);
  assert.deepEqual(fatal.replies, [
    { type: "tagged", tag: "a", status: "BAD", text: "Literal too large" },
    { type: "untagged", status: "BYE", text: "Literal too large" },
  ]);
});

Deno.test("step() ends a pending AUTHENTICATE on a parse error with its tag", () => {
  const started = step(ANY, initialState(), {
    type: "command",
    command: { tag: "t1", name: "AUTHENTICATE", args: [{ type: "atom", value: "PLAIN" }] },
  });
  assert.equal(started.expectLine, true);
  const err = step(ANY, started.state, { type: "parse-error", tag: null, message: "Line too long", fatal: false });
  assert.deepEqual(err.replies, [{ type: "tagged", tag: "t1", status: "BAD", text: "Line too long" }]);
  assert.equal(err.state.waiting, null);
});

Deno.test("step() asks the transport to check passwords and never echoes them", () => {
  const out = step(USERS, initialState(), {
    type: "command",
    command: {
      tag: "a",
      name: "LOGIN",
      args: [{ type: "atom", value: "alice" }, { type: "string", value: "hunter2", literal: false }],
    },
  });
  assert.deepEqual(out.checkLogin, { user: "alice", password: "hunter2" });
  assert.deepEqual(out.replies, []);
  assert.ok(!JSON.stringify(out.state).includes("hunter2"));
});

Deno.test("listMatch() handles * and % wildcards", () => {
  assert.ok(listMatch("*", "INBOX"));
  assert.ok(listMatch("%", "INBOX"));
  assert.ok(listMatch("in*", "INBOX"));
  assert.ok(!listMatch("%/x", "INBOX"));
  assert.ok(!listMatch("Sent", "INBOX"));
  assert.ok(listMatch("I.B*", "I.BOX"), "dots are literal");
  assert.ok(!listMatch("I.B*", "IxBOX"));
});
