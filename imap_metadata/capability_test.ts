import assert from "node:assert/strict";
import {
  rewriteCapabilities,
  rewriteCapabilityLine,
  STANDALONE_POST_LOGIN,
  STANDALONE_PRE_LOGIN,
} from "./capability.ts";

Deno.test("STANDALONE_POST_LOGIN has the exact token METADATA, not METADATA-SERVER", () => {
  assert.ok(STANDALONE_POST_LOGIN.includes("METADATA"));
  assert.ok(!STANDALONE_POST_LOGIN.includes("METADATA-SERVER"));
  assert.ok(STANDALONE_PRE_LOGIN.includes("AUTH=PLAIN") && STANDALONE_PRE_LOGIN.includes("SASL-IR"));
});

Deno.test("rewriteCapabilities() drops COMPRESS and STARTTLS and adds METADATA once", () => {
  assert.deepEqual(rewriteCapabilities(["IMAP4rev1", "STARTTLS", "COMPRESS=DEFLATE", "compress=zstd", "IDLE"]), [
    "IMAP4rev1",
    "IDLE",
    "METADATA",
  ]);
  assert.deepEqual(rewriteCapabilities(["IMAP4rev1", "METADATA", "LITERAL+"]), ["IMAP4rev1", "METADATA", "LITERAL+"]);
  assert.deepEqual(rewriteCapabilities(["IMAP4rev1", "METADATA-SERVER"]), ["IMAP4rev1", "METADATA-SERVER", "METADATA"]);
});

Deno.test("rewriteCapabilityLine() rewrites greeting, data and tagged lists", () => {
  const cases: [string, string, string[]][] = [
    [
      "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.",
      "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN METADATA] Dovecot (Debian) ready.",
      ["IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE", "LITERAL+", "STARTTLS", "AUTH=PLAIN"],
    ],
    ["* CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE", "* CAPABILITY IMAP4rev1 IDLE METADATA", [
      "IMAP4rev1",
      "IDLE",
      "COMPRESS=DEFLATE",
    ]],
    [
      "A0001 OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE QUOTA] Logged in",
      "A0001 OK [CAPABILITY IMAP4rev1 QUOTA METADATA] Logged in",
      ["IMAP4rev1", "COMPRESS=DEFLATE", "QUOTA"],
    ],
    ["* PREAUTH [CAPABILITY IMAP4rev1] hi", "* PREAUTH [CAPABILITY IMAP4rev1 METADATA] hi", ["IMAP4rev1"]],
    ["* capability imap4rev1 compress=deflate", "* capability imap4rev1 METADATA", ["imap4rev1", "compress=deflate"]],
  ];
  for (const [input, line, upstream] of cases) {
    assert.deepEqual(rewriteCapabilityLine(input), { line, upstream }, input);
  }
});

Deno.test("rewriteCapabilityLine() leaves other lines alone", () => {
  assert.equal(rewriteCapabilityLine("* OK [UIDVALIDITY 1] UIDs valid"), null);
  assert.equal(rewriteCapabilityLine("* 1 FETCH (BODY[] {30}"), null);
  assert.equal(rewriteCapabilityLine("a OK CAPABILITY completed"), null);
  assert.equal(rewriteCapabilityLine("* SEARCH 1 2"), null);
});
