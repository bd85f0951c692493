import assert from "node:assert/strict";
import { type ProxyAction, ProxySession, type ProxySessionConfig } from "./proxy_session.ts";

const URL = "http://127.0.0.1:3340/";
const CFG: ProxySessionConfig = {
  entries: new Map([["/shared/vendor/deltachat/irohrelay", URL], ["/shared/comment", "ours"]]),
  maxLineBytes: 1024,
  maxLiteralBytes: 1024,
  maxProxyLiteralBytes: 100_000,
  failedLoginDelayMs: 50,
};
const enc = new TextEncoder();
const dec = new TextDecoder();
const GREETING = "* OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot ready.\r\n";
const LOGIN_OK = "a1 OK [CAPABILITY IMAP4rev1 IDLE LITERAL+ COMPRESS=DEFLATE QUOTA] Logged in\r\n";

/** Collects the bytes of each direction (and other actions) from a series of feeds. */
class Harness {
  readonly p: ProxySession;
  up = "";
  client = "";
  events: string[] = [];
  closed = false;
  delays: number[] = [];
  constructor(cfg = CFG) {
    this.p = new ProxySession(cfg);
  }
  #apply(actions: ProxyAction[]): this {
    for (const a of actions) {
      if (a.type === "to-upstream") this.up += dec.decode(a.bytes);
      else if (a.type === "to-client") {
        this.client += dec.decode(a.bytes);
        if (a.delayMs) this.delays.push(a.delayMs);
      } else if (a.type === "close") this.closed = true;
      else this.events.push(a.event);
    }
    return this;
  }
  c(s: string | Uint8Array): this {
    return this.#apply(this.p.fromClient(typeof s === "string" ? enc.encode(s) : s));
  }
  u(s: string | Uint8Array): this {
    return this.#apply(this.p.fromUpstream(typeof s === "string" ? enc.encode(s) : s));
  }
  /** Returns and clears what each side received. */
  take(): { up: string; client: string } {
    const r = { up: this.up, client: this.client };
    this.up = "";
    this.client = "";
    return r;
  }
}

function loggedIn(cfg = CFG): Harness {
  const h = new Harness(cfg).u(GREETING).c("a1 LOGIN alice secret\r\n").u(LOGIN_OK);
  h.take();
  return h;
}

Deno.test("ProxySession rewrites the greeting: no STARTTLS/COMPRESS, METADATA added", () => {
  const h = new Harness().u(GREETING);
  assert.equal(
    h.client,
    "* OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ AUTH=PLAIN METADATA] Dovecot ready.\r\n",
  );
});

Deno.test("ProxySession forwards LOGIN byte for byte and rewrites the tagged OK's capabilities", () => {
  const h = new Harness().u(GREETING).c('a1 LOGIN "alice" "se\\"cret"\r\n');
  assert.equal(h.take().up, 'a1 LOGIN "alice" "se\\"cret"\r\n');
  assert.equal(h.p.authenticated, false);
  h.u(LOGIN_OK);
  assert.equal(h.client, "a1 OK [CAPABILITY IMAP4rev1 IDLE LITERAL+ QUOTA METADATA] Logged in\r\n");
  assert.equal(h.p.authenticated, true);
  assert.deepEqual(h.events, ["login-ok"]);
});

Deno.test("ProxySession delays a failed login and counts it", () => {
  const h = new Harness().u(GREETING).c("a1 LOGIN alice wrong\r\n").u(
    "a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
  );
  assert.deepEqual(h.delays, [50]);
  assert.deepEqual(h.events, ["login-failed"]);
  assert.equal(h.p.authenticated, false);
});

Deno.test("ProxySession answers core's GETMETADATA itself when the upstream has no METADATA", () => {
  const h = loggedIn().c(
    'A0002 GETMETADATA "" (/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn /shared/vendor/deltachat/maxsmtprecipients /shared/vendor/deltachat/appversions)\r\n',
  );
  const { up, client } = h.take();
  assert.equal(up, "", "nothing reaches the upstream");
  assert.equal(
    client,
    `* METADATA "" (/shared/comment "ours" /shared/admin NIL /shared/vendor/deltachat/irohrelay "${URL}" /shared/vendor/deltachat/turn NIL /shared/vendor/deltachat/maxsmtprecipients NIL /shared/vendor/deltachat/appversions NIL)\r\nA0002 OK GETMETADATA completed\r\n`,
  );
});

Deno.test("ProxySession refuses GETMETADATA before login and COMPRESS/STARTTLS always", () => {
  const h = new Harness().u(GREETING);
  h.take();
  h.c('x GETMETADATA "" /shared/comment\r\ny COMPRESS DEFLATE\r\nz STARTTLS\r\n');
  const { up, client } = h.take();
  assert.equal(up, "");
  assert.equal(
    client,
    "x BAD Log in first\r\ny NO [CANNOT] COMPRESS is not available through this proxy\r\nz BAD STARTTLS is not offered: connect with implicit TLS\r\n",
  );
});

Deno.test("ProxySession forwards entries it does not own when the upstream has METADATA", () => {
  const h = new Harness().u(GREETING.replace("IDLE", "IDLE METADATA")).c("a1 LOGIN u p\r\n").u("a1 OK Logged in\r\n");
  h.take();
  h.c('a2 GETMETADATA "" (/shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn)\r\n');
  let t = h.take();
  assert.equal(t.client, `* METADATA "" (/shared/vendor/deltachat/irohrelay "${URL}")\r\n`);
  assert.equal(t.up, 'a2 GETMETADATA "" ("/shared/vendor/deltachat/turn")\r\n');
  h.u('* METADATA "" (/shared/vendor/deltachat/turn "t:3478:1:pw")\r\na2 OK Getmetadata completed.\r\n');
  t = h.take();
  assert.equal(
    t.client,
    '* METADATA "" (/shared/vendor/deltachat/turn "t:3478:1:pw")\r\na2 OK Getmetadata completed.\r\n',
  );
  h.c("a3 GETMETADATA (DEPTH 1) INBOX (/private/x)\r\n");
  assert.equal(h.take().up, 'a3 GETMETADATA (DEPTH 1) "INBOX" ("/private/x")\r\n');
  h.c("a4 SETMETADATA INBOX (/private/devicetoken {6}\r\n");
  assert.equal(h.take().client, "", "the + waits for a3 to complete");
  h.u("a3 OK done\r\n");
  assert.equal(h.take().client, "a3 OK done\r\n+ Ready for literal data\r\n");
  h.c("Grüß)\r\n");
  assert.equal(h.take().up, 'a4 SETMETADATA "INBOX" ("/private/devicetoken" {6+}\r\nGrüß)\r\n');
  h.c('a5 SETMETADATA "" (/shared/comment "mine")\r\n');
  assert.equal(h.take().client, "", "waits for a4");
  h.u("a4 OK done\r\n");
  assert.equal(h.take().client, "a4 OK done\r\na5 NO [NOPERM] Shared entries are read-only\r\n");
});

Deno.test("ProxySession keeps its replies behind earlier pipelined commands", () => {
  const h = loggedIn().c('f1 FETCH 1 (BODY[])\r\ng1 GETMETADATA "" /shared/vendor/deltachat/irohrelay\r\nn1 NOOP\r\n');
  let t = h.take();
  assert.equal(t.up, "f1 FETCH 1 (BODY[])\r\nn1 NOOP\r\n");
  assert.equal(t.client, "");
  // The FETCH body contains text that looks like a capability line and a tagged reply: it must pass untouched.
  const body = "* CAPABILITY COMPRESS=DEFLATE\r\ng1 OK fake\r\n";
  h.u(`* 1 FETCH (BODY[] {${body.length}}\r\n${body.slice(0, 10)}`);
  assert.equal(h.take().client, `* 1 FETCH (BODY[] {${body.length}}\r\n${body.slice(0, 10)}`);
  h.u(`${body.slice(10)} FLAGS (\\Seen))\r\n`);
  t = h.take();
  assert.equal(t.client, `${body.slice(10)} FLAGS (\\Seen))\r\n`, "no METADATA in the middle of the FETCH response");
  h.u("f1 OK Fetch completed.\r\nn1 OK NOOP completed.\r\n");
  assert.equal(
    h.take().client,
    `f1 OK Fetch completed.\r\n* METADATA "" (/shared/vendor/deltachat/irohrelay "${URL}")\r\ng1 OK GETMETADATA completed\r\nn1 OK NOOP completed.\r\n`,
  );
});

Deno.test("ProxySession holds an APPEND literal until the upstream's +", () => {
  const msg = "From: a@b\r\n\r\nhello\r\n";
  const h = loggedIn().c(`p1 APPEND INBOX {${msg.length}}\r\n`);
  assert.equal(h.take().up, `p1 APPEND INBOX {${msg.length}}\r\n`);
  h.c(msg + "\r\n");
  assert.equal(h.take().up, "", "held until +");
  h.u("+ OK\r\n");
  const t = h.take();
  assert.equal(t.client, "+ OK\r\n");
  assert.equal(t.up, msg + "\r\n");
  h.c('g GETMETADATA "" /shared/comment\r\n');
  assert.equal(h.take().up, "", "after the literal, lines are commands again");
});

Deno.test("ProxySession cancels a held literal when the upstream refuses the command", () => {
  const h = loggedIn().c("p1 APPEND Nope {5}\r\n");
  h.take();
  h.u("p1 NO [TRYCREATE] Mailbox doesn't exist\r\n");
  h.c('g GETMETADATA "" /shared/comment\r\n');
  assert.equal(
    h.take().client,
    'p1 NO [TRYCREATE] Mailbox doesn\'t exist\r\n* METADATA "" (/shared/comment "ours")\r\ng OK GETMETADATA completed\r\n',
  );
});

Deno.test("ProxySession streams {n+} literals and passes IDLE/DONE and SASL lines through", () => {
  const h = loggedIn().c("p1 APPEND INBOX {3+}\r\nabc\r\ni1 IDLE\r\n");
  assert.equal(h.take().up, "p1 APPEND INBOX {3+}\r\nabc\r\ni1 IDLE\r\n");
  h.u("p1 OK appended\r\n+ idling\r\n* 2 EXISTS\r\n");
  assert.equal(h.take().client, "p1 OK appended\r\n+ idling\r\n* 2 EXISTS\r\n");
  h.c("DONE\r\n");
  assert.equal(h.take().up, "DONE\r\n");
  h.u("i1 OK Idle completed.\r\n");
  const auth = new Harness().u(GREETING).c("a AUTHENTICATE PLAIN\r\n").u("+ \r\n").c("R0VUTUVUQURBVEEgIiIgL3g=\r\n");
  assert.equal(auth.take().up, "a AUTHENTICATE PLAIN\r\nR0VUTUVUQURBVEEgIiIgL3g=\r\n");
  auth.u("a OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] Logged in\r\n");
  assert.equal(auth.p.authenticated, true);
  assert.equal(auth.take().client, "a OK [CAPABILITY IMAP4rev1 METADATA] Logged in\r\n");
});

Deno.test("ProxySession refuses an overlong line or literal without forwarding it", () => {
  const h = loggedIn().c(`x1 NOOP ${"a".repeat(2000)}\r\nx2 APPEND INBOX {999999}\r\nx3 NOOP\r\n`);
  const t = h.take();
  assert.equal(t.up, "x3 NOOP\r\n");
  assert.equal(t.client, "x1 BAD Line too long\r\nx2 BAD Literal too large: at most 100000 bytes\r\n");
  assert.equal(h.closed, false);
  const n = loggedIn().c("x APPEND INBOX {999999+}\r\n");
  assert.equal(n.closed, true, "a non-synchronizing literal we will not relay ends the session");
  assert.equal(n.take().client, "* BYE Literal too large\r\n");
});

Deno.test("ProxySession gives identical output when both sides arrive byte by byte", () => {
  const script: ["c" | "u", string][] = [
    ["u", GREETING],
    ["c", "a1 LOGIN {5}\r\n"],
    ["u", "+ go\r\n"],
    ["c", "alice pw\r\n"],
    ["u", LOGIN_OK],
    ["c", "b APPEND INBOX {4}\r\n"],
    ["u", "+ go\r\n"],
    ["c", 'xyz\n\r\nc GETMETADATA "" (/shared/comment)\r\nd FETCH 1 BODY[]\r\n'],
    ["u", "b OK done\r\n* 1 FETCH (BODY[] {5}\r\n12345)\r\nd OK Fetch completed.\r\n"],
  ];
  const run = (chunk: number) => {
    const h = new Harness();
    for (const [side, text] of script) {
      const bytes = enc.encode(text);
      for (let i = 0; i < bytes.length; i += chunk) {
        if (side === "c") h.c(bytes.subarray(i, i + chunk));
        else h.u(bytes.subarray(i, i + chunk));
      }
    }
    return h.take();
  };
  const whole = run(1_000_000);
  const bytewise = run(1);
  assert.equal(whole.up, "a1 LOGIN {5}\r\nalice pw\r\nb APPEND INBOX {4}\r\nxyz\n\r\nd FETCH 1 BODY[]\r\n");
  assert.equal(bytewise.up, whole.up);
  assert.equal(bytewise.client, whole.client);
  assert.ok(
    whole.client.endsWith(
      'b OK done\r\n* METADATA "" (/shared/comment "ours")\r\nc OK GETMETADATA completed\r\n* 1 FETCH (BODY[] {5}\r\n12345)\r\nd OK Fetch completed.\r\n',
    ),
    whole.client,
  );
});

Deno.test("ProxySession streams a very long upstream line without buffering it", () => {
  const h = loggedIn().c("s UID SEARCH ALL\r\n");
  h.take();
  const ids = Array.from({ length: 5000 }, (_, i) => String(i + 1)).join(" ");
  h.u(`* SEARCH ${ids.slice(0, 20000)}`);
  assert.equal(h.take().client.length, `* SEARCH ${ids.slice(0, 20000)}`.length, "sent before the line ends");
  h.u(`${ids.slice(20000)}\r\ns OK Search completed.\r\n`);
  assert.ok(h.take().client.endsWith("s OK Search completed.\r\n"));
});

Deno.test("ProxySession ends a session whose pipelined replies pile up behind a silent upstream", () => {
  const cap = 16 * 1024;
  const h = new Harness({ ...CFG, maxPendingReplyBytes: cap });
  // No greeting yet: nothing we answer may be written, so every GETMETADATA waits in the queue.
  const line = 'g GETMETADATA "" /shared/vendor/deltachat/irohrelay\r\n';
  let sent = 0;
  let actions: ProxyAction[] = [];
  for (; sent < 10_000 && !h.closed; sent++) {
    actions = h.p.fromClient(enc.encode(line));
    for (const a of actions) if (a.type === "close") h.closed = true;
    assert.ok(h.p.pendingBytes <= cap, `held ${h.p.pendingBytes} bytes`);
  }
  assert.ok(h.closed, "closed");
  assert.ok(sent < 1000, `closed after ${sent} lines`);
  const close = actions.find((a) => a.type === "close");
  assert.equal(close?.type === "close" && close.code, "reply_queue_full");
  const bye = actions.find((a) => a.type === "to-client");
  assert.match(dec.decode(bye?.type === "to-client" ? bye.bytes : new Uint8Array()), /^\* BYE /);
});

Deno.test("ProxySession keeps a normal pipelined burst under the cap", () => {
  const h = loggedIn({ ...CFG, maxPendingReplyBytes: 16 * 1024 });
  // A forwarded command the upstream has not answered, then ten of ours behind it.
  h.c("s1 SELECT INBOX\r\n");
  for (let i = 0; i < 10; i++) h.c(`m${i} GETMETADATA "" /shared/comment\r\n`);
  assert.equal(h.closed, false);
  assert.equal(h.take().client, "");
  h.u("s1 OK [READ-WRITE] done\r\n");
  const client = h.take().client;
  assert.match(client, /^s1 OK .*m9 OK GETMETADATA completed\r\n$/s);
  assert.equal(h.p.pendingBytes, 0);
});

Deno.test("ProxySession assembles a 60 KB line sent one byte per read with linear copying", () => {
  const h = new Harness({ ...CFG, maxLineBytes: 64 * 1024 }).u(GREETING);
  const line = enc.encode(`a1 NOOP ${"x".repeat(60 * 1024)}\r\n`);
  for (let i = 0; i < line.length; i++) h.c(line.subarray(i, i + 1));
  assert.equal(h.up.length, line.length, "forwarded whole");
  assert.ok(h.p.inputBytesCopied < 3 * line.length + GREETING.length * 3, `copied ${h.p.inputBytesCopied}`);
});

Deno.test("ProxySession copies a read of many pipelined intercepted commands once, not once per command", () => {
  const h = loggedIn({ ...CFG, maxPendingReplyBytes: 1 << 20 });
  const before = h.p.inputBytesCopied;
  const chunk = enc.encode('g GETMETADATA "" /shared/comment\r\n'.repeat(900));
  h.c(chunk);
  assert.equal(h.client.split("g OK GETMETADATA completed").length - 1, 900);
  const copied = h.p.inputBytesCopied - before;
  // Handing the whole rest of the read to each command's parser and back copied ~900 × 15 KB here.
  assert.ok(copied < 3 * chunk.length, `copied ${copied} bytes for a ${chunk.length}-byte read`);
});
