/**
 * Standalone mode with real clients (spec §7): Python imaplib sending core's
 * exact GETMETADATA commands, curl's IMAP client, and our test client; over
 * plain TCP and implicit TLS. Each checks that the URL the server returns is
 * the configured one and that a real relay answers at it.
 */

import assert from "node:assert/strict";
import { hashPassword } from "../imap_metadata/mod.ts";
import { TestImapClient } from "./support/imap_client.ts";
import {
  assertRelayAnswers,
  CA_PEM,
  curlImap,
  imaplibProbe,
  type Stack,
  startStack,
  TLS_DIR,
} from "./support/imap_stack.ts";

const IROH = "/shared/vendor/deltachat/irohrelay";

function standaloneToml(relayUrl: string, extra = ""): string {
  return `
[imap]
bind_addr = "127.0.0.1:0"
tls_bind_addr = "127.0.0.1:0"
cert_path = "${TLS_DIR}cert.pem"
key_path = "${TLS_DIR}key.pem"
iroh_relay_url = "${relayUrl}"
comment = "Grüße from the test relay"
admin = "mailto:root@example.org"
${extra}
[imap.limits]
failed_login_delay_secs = 0.05
`;
}

async function withStack(fn: (s: Stack) => Promise<void>, extra = ""): Promise<void> {
  const s = await startStack((url) => standaloneToml(url, extra));
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

Deno.test("imaplib with core v2.57's GETMETADATA over plain IMAP gets the relay URL, and the relay answers", async () => {
  await withStack(async (s) => {
    const r = await imaplibProbe(s.imap.addrs.plain!.port, {
      tls: false,
      user: "alice@example.org",
      password: 'se"cret',
      how: "login",
      variant: "v2.57",
    });
    assert.equal(r.login_typ, "OK");
    assert.match(r.login_data[0]!, /^\[CAPABILITY [^\]]*\bMETADATA\b[^\]]*\] /, "tagged LOGIN OK carries METADATA");
    assert.ok(r.capabilities!.includes("METADATA"));
    assert.equal(r.typ, "OK");
    assert.deepEqual(r.entries, {
      "/shared/comment": "Grüße from the test relay",
      "/shared/admin": "mailto:root@example.org",
      [IROH]: s.relayUrl,
      "/shared/vendor/deltachat/turn": null,
      "/shared/vendor/deltachat/maxsmtprecipients": null,
    });
    const size = new TextEncoder().encode("Grüße from the test relay").length;
    assert.ok(r.raw!.startsWith(`[(b'"" (/shared/comment {${size}}', b'Gr`), `non-ASCII comes as a literal: ${r.raw}`);
    assert.equal(r.select!.typ, "OK");
    assert.equal(r.select!.exists, "0");
    assert.deepEqual(r.select!.uidvalidity, ["1"]);
    assert.deepEqual(r.select!.uidnext, ["1"]);
    await assertRelayAnswers(r.entries![IROH]!);
  });
});

Deno.test("imaplib with core v2.59's GETMETADATA (appversions) over implicit TLS gets the relay URL", async () => {
  await withStack(async (s) => {
    const r = await imaplibProbe(s.imap.addrs.tls!.port, {
      tls: true,
      user: "bob",
      password: "x",
      how: "authenticate",
      variant: "v2.59",
    });
    assert.equal(r.login_typ, "OK");
    assert.match(r.login_data[0]!, /\bMETADATA\b/);
    assert.equal(r.typ, "OK");
    assert.equal(r.entries![IROH], s.relayUrl);
    assert.equal(r.entries!["/shared/vendor/deltachat/appversions"], null);
    assert.equal(Object.keys(r.entries!).length, 6, "one value or NIL for each listed key");
    await assertRelayAnswers(r.entries![IROH]!);
  });
});

Deno.test("curl's IMAP client gets the relay URL over plain and implicit TLS", async () => {
  await withStack(async (s) => {
    for (
      const url of [`imap://127.0.0.1:${s.imap.addrs.plain!.port}/`, `imaps://127.0.0.1:${s.imap.addrs.tls!.port}/`]
    ) {
      const r = await curlImap(url, "alice@example.org:secret", `GETMETADATA "" (${IROH} /shared/comment)`);
      assert.equal(r.code, 0, r.stderr);
      const meta = r.serverLines.filter((l) => l.startsWith("* METADATA"));
      assert.equal(meta.length, 1, r.serverLines.join("\n"));
      const m = new RegExp(`${IROH} "([^"]+)"`).exec(meta[0]!);
      assert.equal(m?.[1], s.relayUrl, url);
      // curl used AUTHENTICATE PLAIN with SASL-IR (spec §7); the literal's data is the next "<" line.
      assert.ok(r.stderr.includes("> A002 AUTHENTICATE PLAIN "), url);
      const lit = r.serverLines.indexOf(meta[0]!);
      assert.equal(r.serverLines[lit + 1], "Grüße from the test relay)");
      await assertRelayAnswers(m![1]!);
    }
  });
});

Deno.test("login = users: hashed passwords admit the right password only, after a delay when wrong", async () => {
  const hash = await hashPassword("s3cret pass", { iterations: 100_000 });
  await withStack(async (s) => {
    const port = s.imap.addrs.plain!.port;
    const ok = await imaplibProbe(port, {
      tls: false,
      user: "alice@example.org",
      password: "s3cret pass",
      how: "login",
      variant: "single",
    });
    assert.equal(ok.login_typ, "OK");
    assert.deepEqual(ok.entries, { [IROH]: s.relayUrl });
    const viaAuth = await imaplibProbe(port, {
      tls: false,
      user: "alice@example.org",
      password: "s3cret pass",
      how: "authenticate",
      variant: "single",
    });
    assert.equal(viaAuth.typ, "OK");
    const c = await TestImapClient.connect({ port });
    await c.response();
    const t0 = performance.now();
    const bad = await c.command("a1", 'LOGIN "alice@example.org" "wrong"');
    assert.ok(performance.now() - t0 >= 45, "failed-login delay");
    assert.equal(bad.at(-1)!.text, "a1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    const before = await c.command("a2", `GETMETADATA "" ${IROH}`);
    assert.equal(before.at(-1)!.text, "a2 BAD Log in first\r\n");
    const unknown = await c.command("a3", 'LOGIN "mallory" "s3cret pass"');
    assert.match(unknown.at(-1)!.text, /^a3 NO/);
    await c.close();
    assert.match(s.imap.metrics(), /^imap_logins_failed_total 2$/m);
  }, `login = "users"\n[imap.users]\n"alice@example.org" = "${hash}"\n`);
});

Deno.test("standalone session over TLS: literals, SELECT, IDLE, pipelining and LOGOUT", async () => {
  await withStack(async (s) => {
    const c = await TestImapClient.connect({ port: s.imap.addrs.tls!.port, tls: { caCerts: [CA_PEM] } });
    const greeting = (await c.response())!.text;
    assert.equal(greeting, "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] IMAP METADATA discovery ready\r\n");
    await c.send("A0001 LOGIN {17}\r\n");
    assert.equal((await c.response())!.text, "+ Ready for literal data\r\n");
    await c.send('alice@example.org "pw"\r\n');
    assert.equal(
      (await c.until("A0001")).at(-1)!.text,
      "A0001 OK [CAPABILITY IMAP4rev1 IDLE UNSELECT METADATA] LOGIN completed\r\n",
    );
    // Pipelined: three commands in one write.
    await c.send(`A0002 GETMETADATA "" (${IROH})\r\nA0003 SELECT "INBOX"\r\nA0004 IDLE\r\n`);
    const replies = [...await c.until("A0002"), ...await c.until("A0003")];
    assert.equal(replies[0]!.text, `* METADATA "" (${IROH} "${s.relayUrl}")\r\n`);
    const select = replies.map((r) => r.text).join("");
    for (const want of ["* 0 EXISTS\r\n", "[UIDVALIDITY 1]", "[UIDNEXT 1]", "A0003 OK [READ-WRITE]"]) {
      assert.ok(select.includes(want), want);
    }
    assert.equal((await c.response())!.text, "+ idling\r\n");
    await c.send("DONE\r\n");
    assert.equal((await c.response())!.text, "A0004 OK IDLE terminated\r\n");
    const bye = await c.command("A0005", "LOGOUT");
    assert.deepEqual(bye.map((r) => r.text), ["* BYE Logging out\r\n", "A0005 OK LOGOUT completed\r\n"]);
    assert.equal(await c.rest(), "", "server closes after LOGOUT");
    await c.close();
    const status = s.imap.status();
    assert.equal(status.mode, "standalone");
    assert.equal(status.irohRelayUrl, s.relayUrl);
    const metrics = s.imap.metrics();
    assert.match(metrics, /^imap_getmetadata_total 1$/m);
    assert.match(metrics, /^imap_sessions_active 0$/m);
    assert.ok(!metrics.includes("# EOF"));
  });
});
