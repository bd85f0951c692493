/**
 * Proxy mode in front of a real Dovecot (Debian dovecot-imapd, started by
 * the test on loopback with a throwaway config): the whole session is
 * relayed byte for byte, COMPRESS never reaches the client, METADATA is
 * added, and GETMETADATA returns our relay URL, which a real relay answers.
 */

import assert from "node:assert/strict";
import { type ImapResponse, TestImapClient } from "./support/imap_client.ts";
import {
  assertRelayAnswers,
  CA_PEM,
  curlImap,
  imaplibProbe,
  type Stack,
  startStack,
  TLS_DIR,
} from "./support/imap_stack.ts";
import { type MailServer, startMailServer } from "./support/mail_server.ts";

const IROH = "/shared/vendor/deltachat/irohrelay";
const CORE_259 =
  'GETMETADATA "" (/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn /shared/vendor/deltachat/maxsmtprecipients /shared/vendor/deltachat/appversions)';
const ALICE = { name: "alice@example.org", password: "alice pw" };
const BOB = { name: "bob@example.org", password: 'bob "pw"' };
const TLS = { certPath: `${TLS_DIR}cert.pem`, keyPath: `${TLS_DIR}key.pem` };

function proxyToml(relayUrl: string, upstream: string, limits = ""): string {
  return `
[imap]
mode = "proxy"
bind_addr = "127.0.0.1:0"
tls_bind_addr = "127.0.0.1:0"
cert_path = "${TLS_DIR}cert.pem"
key_path = "${TLS_DIR}key.pem"
iroh_relay_url = "${relayUrl}"
[imap.upstream]
${upstream}
[imap.limits]
failed_login_delay_secs = 0.05
${limits}
`;
}

/** Every capability list a response carries (greeting code, data line, tagged code). */
function capabilityLists(responses: ImapResponse[]): string[][] {
  const out: string[][] = [];
  for (const r of responses) {
    const line = r.text.split("\r\n")[0]!;
    const m = /^\* CAPABILITY (.*)$/.exec(line) ?? /\[CAPABILITY ([^\]]*)\]/.exec(line);
    if (m) out.push(m[1]!.split(" "));
  }
  return out;
}

function assertCapabilitiesClean(responses: ImapResponse[], expectAny = true): void {
  const lists = capabilityLists(responses);
  if (expectAny) assert.ok(lists.length > 0, "a capability list was sent");
  for (const caps of lists) {
    assert.ok(!caps.some((c) => c.toUpperCase().startsWith("COMPRESS")), `COMPRESS leaked: ${caps.join(" ")}`);
    assert.ok(caps.includes("METADATA"), `METADATA missing: ${caps.join(" ")}`);
  }
}

/** A test message with lines that look like IMAP responses and a body large enough for many reads. */
function bigMessage(tag: string): Uint8Array {
  let body =
    `From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: proxy test ${tag}\r\nMessage-ID: <${tag}@example.org>\r\n` +
    "Content-Type: text/plain; charset=utf-8\r\n\r\n" +
    "* CAPABILITY IMAP4rev1 COMPRESS=DEFLATE\r\nA0001 OK [CAPABILITY COMPRESS=DEFLATE] not a reply\r\n+ not a continuation {5}\r\n";
  for (let i = 0; body.length < 200_000; i++) body += `line ${i}: Grüße, ça va? ${"x".repeat(i % 70)}\r\n`;
  return new TextEncoder().encode(body);
}

/** APPENDs with a synchronizing literal, waiting for the upstream's "+". */
async function append(c: TestImapClient, tag: string, msg: Uint8Array): Promise<ImapResponse[]> {
  await c.send(`${tag} APPEND INBOX {${msg.length}}\r\n`);
  const go = (await c.response())!;
  assert.match(go.text, /^\+ /, go.text);
  await c.send(msg);
  await c.send("\r\n");
  return await c.until(tag);
}

async function login(
  port: number,
  user: { name: string; password: string },
  tls = false,
): Promise<{ c: TestImapClient; greeting: ImapResponse; login: ImapResponse[] }> {
  const c = await TestImapClient.connect({ port, ...(tls ? { tls: { caCerts: [CA_PEM] } } : {}) });
  const greeting = (await c.response())!;
  const quoted = (s: string) => `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
  const r = await c.command("L1", `LOGIN ${quoted(user.name)} ${quoted(user.password)}`);
  return { c, greeting, login: r };
}

Deno.test("proxy in front of Dovecot (TLS upstream, certificate checked, METADATA off, COMPRESS on)", async (t) => {
  const mail = await startMailServer({ users: [ALICE, BOB], imapsPort: 0, tls: TLS, compress: true, metadata: false });
  let stack: Stack | undefined;
  try {
    stack = await startStack((url) =>
      proxyToml(url, `host = "127.0.0.1"\nport = ${mail.imapsPort}\ntls = true\nca_file = "${TLS_DIR}ca.pem"`)
    );
    const s = stack;
    const plain = s.imap.addrs.plain!.port;

    await t.step("capability lists never carry COMPRESS and always carry METADATA", async () => {
      const { c, greeting, login: lr } = await login(plain, ALICE);
      assert.match(greeting.text, /Dovecot/);
      assert.match(lr.at(-1)!.text, /^L1 OK \[CAPABILITY /, "Dovecot's tagged OK carries capabilities");
      const cap = await c.command("C1", "CAPABILITY");
      assertCapabilitiesClean([greeting, ...lr, ...cap]);
      assert.ok(capabilityLists(cap)[0]!.includes("IDLE"), "the rest of Dovecot's list is kept");
      const z = await c.command("Z1", "COMPRESS DEFLATE");
      assert.equal(z.at(-1)!.text, "Z1 NO [CANNOT] COMPRESS is not available through this proxy\r\n");
      assert.equal((await c.command("N1", "NOOP")).at(-1)!.text.slice(0, 5), "N1 OK", "the stream is still plain");
      await c.close();
    });

    await t.step("core v2.59's GETMETADATA returns our URL in one METADATA line, and the relay answers", async () => {
      const { c } = await login(plain, ALICE);
      const r = await c.command("A0002", CORE_259);
      assert.equal(r.length, 2);
      assert.equal(
        r[0]!.text,
        `* METADATA "" (/shared/comment NIL /shared/admin NIL ${IROH} "${s.relayUrl}" /shared/vendor/deltachat/turn NIL /shared/vendor/deltachat/maxsmtprecipients NIL /shared/vendor/deltachat/appversions NIL)\r\n`,
      );
      assert.equal(r[1]!.text, "A0002 OK GETMETADATA completed\r\n");
      await assertRelayAnswers(s.relayUrl);
      await c.close();
    });

    await t.step("imaplib (core v2.57 command) and curl work through the proxy over TLS", async () => {
      const r = await imaplibProbe(s.imap.addrs.tls!.port, {
        tls: true,
        user: BOB.name,
        password: BOB.password,
        how: "login",
        variant: "v2.57",
      });
      assert.equal(r.login_typ, "OK");
      assert.ok(
        r.capabilities!.includes("METADATA") && !r.capabilities!.some((c) => c.startsWith("COMPRESS")),
        r.capabilities!.join(" "),
      );
      assert.equal(r.entries![IROH], s.relayUrl);
      assert.equal(r.select!.typ, "OK");
      assert.equal(r.select!.uidvalidity.length, 1, "Dovecot's SELECT came through");
      const cu = await curlImap(
        `imaps://127.0.0.1:${s.imap.addrs.tls!.port}/`,
        `${ALICE.name}:${ALICE.password}`,
        `GETMETADATA "" (${IROH})`,
      );
      assert.equal(cu.code, 0, cu.stderr);
      assert.ok(cu.serverLines.includes(`* METADATA "" (${IROH} "${s.relayUrl}")`), cu.serverLines.join("\n"));
      assert.ok(cu.stderr.includes("AUTHENTICATE PLAIN"), "curl's SASL exchange went through to Dovecot");
      await assertRelayAnswers(r.entries![IROH]!);
    });

    await t.step(
      "SELECT, APPEND with a literal, FETCH back byte-identical, IDLE sees a second session's APPEND",
      async () => {
        const { c: a } = await login(plain, ALICE);
        const sel = await a.command("S1", "SELECT INBOX");
        const selText = sel.map((r) => r.text).join("");
        assert.match(selText, /\[UIDVALIDITY \d+\]/);
        assert.match(selText, /\* \d+ EXISTS/);
        const msg = bigMessage("one");
        const ap = await append(a, "P1", msg);
        const uid = /\[APPENDUID \d+ (\d+)\]/.exec(ap.at(-1)!.text)?.[1];
        assert.ok(uid, ap.at(-1)!.text);
        const f = await a.command("F1", `UID FETCH ${uid} (BODY.PEEK[])`);
        const fetch = f.find((r) => r.text.includes(" FETCH "))!;
        const head = new TextEncoder().encode(/^[^\n]*\{\d+\}\r\n/.exec(fetch.text)![0]);
        const got = fetch.bytes.subarray(head.length, head.length + msg.length);
        assert.equal(got.length, msg.length);
        assert.ok(got.every((b, i) => b === msg[i]), "FETCH body is byte-identical to what was APPENDed");

        await a.send("I1 IDLE\r\n");
        assert.match((await a.response())!.text, /^\+ /);
        const { c: b } = await login(s.imap.addrs.tls!.port, ALICE, true);
        const ap2 = await append(
          b,
          "P2",
          new TextEncoder().encode("From: bob@example.org\r\nSubject: two\r\n\r\nhello\r\n"),
        );
        assert.match(ap2.at(-1)!.text, /^P2 OK/);
        await b.command("O2", "LOGOUT");
        await b.close();
        let exists = "";
        for (let i = 0; i < 20 && !exists; i++) {
          const r = (await a.response(5000))!;
          if (/^\* \d+ EXISTS/.test(r.text)) exists = r.text;
        }
        assert.match(exists, /^\* 2 EXISTS/);
        await a.send("DONE\r\n");
        const done = await a.until("I1");
        assert.match(done.at(-1)!.text, /^I1 OK/);
        await a.command("O1", "LOGOUT");
        await a.close();
      },
    );

    await t.step("overlong lines and huge literals get BAD from the proxy and the session goes on", async () => {
      const { c } = await login(plain, ALICE);
      const big = await c.command("X1", `NOOP ${"x".repeat(70_000)}`);
      assert.equal(big.at(-1)!.text, "X1 BAD Line too long\r\n");
      const lit = await c.command("X2", "APPEND INBOX {999999999}");
      assert.match(lit.at(-1)!.text, /^X2 BAD Literal too large/);
      assert.match((await c.command("X3", "NOOP")).at(-1)!.text, /^X3 OK/);
      await c.close();
    });

    await t.step(
      "the upstream certificate is checked: without ca_file the proxy refuses; verify_certificate = false connects",
      async () => {
        const strict = await startStack((url) =>
          proxyToml(url, `host = "127.0.0.1"\nport = ${mail.imapsPort}\ntls = true`)
        );
        try {
          const c = await TestImapClient.connect({ port: strict.imap.addrs.plain!.port });
          assert.equal(await c.rest(), "* BYE Upstream server unavailable\r\n");
          await c.close();
          assert.match(strict.imap.metrics(), /^imap_upstream_errors_total 1$/m);
        } finally {
          await strict.close();
        }
        // server_name: dial 127.0.0.1 but check the certificate for that name (Deno.startTls path).
        for (const [name, works] of [["localhost", true], ["wrong.example", false]] as const) {
          const named = await startStack((url) =>
            proxyToml(
              url,
              `host = "127.0.0.1"\nport = ${mail.imapsPort}\ntls = true\nca_file = "${TLS_DIR}ca.pem"\nserver_name = "${name}"`,
            )
          );
          try {
            const c = await TestImapClient.connect({ port: named.imap.addrs.plain!.port });
            const first = (await c.response())!.text;
            if (works) assert.match(first, /^\* OK .*Dovecot/, name);
            else assert.equal(first, "* BYE Upstream server unavailable\r\n", name);
            await c.close();
          } finally {
            await named.close();
          }
        }
        const lax = await startStack((url) =>
          proxyToml(url, `host = "127.0.0.1"\nport = ${mail.imapsPort}\ntls = true\nverify_certificate = false`)
        );
        try {
          const { c, login: lr } = await login(lax.imap.addrs.plain!.port, ALICE);
          assert.match(lr.at(-1)!.text, /^L1 OK/);
          const md = await c.command("G", `GETMETADATA "" ${IROH}`);
          assert.equal(md[0]!.text, `* METADATA "" (${IROH} "${lax.relayUrl}")\r\n`);
          await c.close();
        } finally {
          await lax.close();
        }
      },
    );

    await t.step(
      "a half-sent LOGIN through the proxy ends with the login timeout; the proxy keeps serving",
      async () => {
        const quick = await startStack((url) =>
          proxyToml(
            url,
            `host = "127.0.0.1"\nport = ${mail.imapsPort}\ntls = true\nca_file = "${TLS_DIR}ca.pem"`,
            "login_timeout_secs = 0.2",
          )
        );
        try {
          const c = await TestImapClient.connect({ port: quick.imap.addrs.plain!.port });
          assert.match((await c.response())!.text, /Dovecot/);
          const t0 = performance.now();
          await c.send('L1 LOGIN "alice@example.org"');
          assert.equal(await c.rest(), "* BYE Login timeout\r\n");
          assert.ok(performance.now() - t0 >= 150);
          await c.close();
          const { c: ok, login: lr } = await login(quick.imap.addrs.plain!.port, ALICE);
          assert.match(lr.at(-1)!.text, /^L1 OK/);
          await ok.close();
          assert.match(quick.imap.metrics(), /^imap_timeouts_total 1$/m);
        } finally {
          await quick.close();
        }
      },
    );

    // Last on purpose: Dovecot's auth penalty then slows every later login from 127.0.0.1 (all proxied
    // sessions share the proxy's address), which would cost the steps above seconds.
    await t.step("a wrong password is Dovecot's NO", async () => {
      const { c, login: lr } = await login(plain, { name: ALICE.name, password: "wrong" });
      assert.match(lr.at(-1)!.text, /^L1 NO \[AUTHENTICATIONFAILED\]/);
      const md = await c.command("G1", `GETMETADATA "" ${IROH}`);
      assert.equal(md.at(-1)!.text, "G1 BAD Log in first\r\n");
      await c.close();
    });

    const m = s.imap.metrics();
    assert.match(m, /^imap_logins_ok_total [1-9]/m);
    assert.match(m, /^imap_logins_failed_total 1$/m);
  } catch (e) {
    console.error(await mail.log());
    throw e;
  } finally {
    await stack?.close();
    await mail.stop();
  }
});

Deno.test("proxy forwards entries it does not own to a Dovecot with METADATA (plain upstream)", async () => {
  let mail: MailServer | undefined;
  let stack: Stack | undefined;
  try {
    mail = await startMailServer({ users: [ALICE], metadata: true, serverComment: "Dovecot says hi" });
    const port = mail.imapPort;
    stack = await startStack((url) => proxyToml(url, `host = "127.0.0.1"\nport = ${port}\ntls = false`));
    const { c, greeting } = await login(stack.imap.addrs.plain!.port, ALICE);
    assertCapabilitiesClean([greeting]);
    const r = await c.command("A0002", CORE_259);
    const text = r.map((x) => x.text).join("");
    assert.ok(text.startsWith(`* METADATA "" (${IROH} "${stack.relayUrl}")\r\n`), text);
    assert.match(text, /\* METADATA "" \(\/shared\/comment \{15\}\r\nDovecot says hi /, "Dovecot answered the rest");
    assert.match(r.at(-1)!.text, /^A0002 OK/);
    const set = await c.command("S1", 'SETMETADATA INBOX (/private/comment "from the test")');
    assert.match(set.at(-1)!.text, /^S1 OK/, set.at(-1)!.text);
    const get = await c.command("G1", "GETMETADATA INBOX (/private/comment)");
    assert.match(get[0]!.text, /\/private\/comment (\{13\}\r\n|")from the test/);
    const ours = await c.command("S2", `SETMETADATA "" (${IROH} "http://evil.example/")`);
    assert.equal(ours.at(-1)!.text, "S2 NO [NOPERM] Shared entries are read-only\r\n");
    const py = await imaplibProbe(stack.imap.addrs.plain!.port, {
      tls: false,
      user: ALICE.name,
      password: ALICE.password,
      how: "authenticate",
      variant: "v2.59",
    });
    assert.equal(py.entries![IROH], stack.relayUrl);
    assert.equal(py.entries!["/shared/comment"], "Dovecot says hi");
    await c.close();
    await assertRelayAnswers(stack.relayUrl);
  } catch (e) {
    if (mail) console.error(await mail.log());
    throw e;
  } finally {
    await stack?.close();
    await mail?.stop();
  }
});
