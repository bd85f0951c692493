import assert from "node:assert/strict";
import { encodeMetadata, encodeReplies, encodeReply, encodeString, isQuotable } from "./encoder.ts";

const dec = new TextDecoder();
const text = (b: Uint8Array) => dec.decode(b);

Deno.test("encodeString() quotes printable ASCII without quote or backslash", () => {
  assert.equal(text(encodeString("http://127.0.0.1:3340/")), '"http://127.0.0.1:3340/"');
  assert.equal(text(encodeString("")), '""');
  assert.equal(text(encodeString("mailto:root@example.org")), '"mailto:root@example.org"');
});

Deno.test("encodeString() sends quotes, backslashes, controls and non-ASCII as literals", () => {
  // Core does not undo quoted escapes (spec §2.4), so a literal is the only faithful form.
  assert.equal(text(encodeString('say "hi"')), '{8}\r\nsay "hi"');
  assert.equal(text(encodeString("a\\b")), "{3}\r\na\\b");
  assert.equal(text(encodeString("two\r\nlines")), "{10}\r\ntwo\r\nlines");
  assert.equal(text(encodeString("Grüße")), "{7}\r\nGrüße", "length counts UTF-8 bytes");
  assert.equal(text(encodeString("\t")), "{1}\r\n\t");
});

Deno.test("isQuotable() accepts exactly 0x20-0x7e minus quote and backslash", () => {
  for (let b = 0; b < 256; b++) {
    assert.equal(isQuotable(Uint8Array.of(b)), b >= 0x20 && b <= 0x7e && b !== 0x22 && b !== 0x5c, `byte ${b}`);
  }
});

Deno.test("encodeMetadata() writes one line with single spaces, NIL and literals", () => {
  const out = encodeMetadata("", [
    { name: "/shared/comment", value: "Chatmail server" },
    { name: "/shared/admin", value: null },
    { name: "/shared/vendor/deltachat/irohrelay", value: "http://127.0.0.1:3340/" },
    { name: "/shared/vendor/x/motd", value: "Grüße" },
  ]);
  assert.equal(
    text(out),
    '* METADATA "" (/shared/comment "Chatmail server" /shared/admin NIL /shared/vendor/deltachat/irohrelay "http://127.0.0.1:3340/" /shared/vendor/x/motd {7}\r\nGrüße)\r\n',
  );
});

Deno.test("encodeMetadata() writes nothing for no entries, never `()`", () => {
  assert.equal(encodeMetadata("", []).length, 0);
  assert.equal(encodeReply({ type: "metadata", mailbox: "", entries: [] }).length, 0);
});

Deno.test("encodeMetadata() quotes the mailbox name", () => {
  assert.equal(
    text(encodeMetadata("INBOX", [{ name: "/private/x", value: null }])),
    '* METADATA "INBOX" (/private/x NIL)\r\n',
  );
});

Deno.test("encodeReply() writes tagged, untagged, data and continuation replies", () => {
  assert.equal(
    text(encodeReply({ type: "tagged", tag: "A1", status: "OK", code: "CAPABILITY IMAP4rev1 METADATA", text: "done" })),
    "A1 OK [CAPABILITY IMAP4rev1 METADATA] done\r\n",
  );
  assert.equal(
    text(encodeReply({ type: "tagged", tag: "A1", status: "BAD", text: "Unknown command" })),
    "A1 BAD Unknown command\r\n",
  );
  assert.equal(text(encodeReply({ type: "untagged", status: "BYE", text: "Logging out" })), "* BYE Logging out\r\n");
  assert.equal(text(encodeReply({ type: "data", text: "0 EXISTS" })), "* 0 EXISTS\r\n");
  assert.equal(text(encodeReply({ type: "continue", text: "" })), "+ \r\n");
  assert.equal(
    text(
      encodeReplies([{ type: "data", text: "CAPABILITY IMAP4rev1" }, {
        type: "tagged",
        tag: "a",
        status: "OK",
        text: "x",
      }]),
    ),
    "* CAPABILITY IMAP4rev1\r\na OK x\r\n",
  );
});
