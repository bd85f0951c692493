/**
 * Hostile and broken clients against the standalone listener: overlong
 * lines, huge literal announcements, garbage, half-sent commands, a flood of
 * concurrent sessions, the session cap, TLS garbage. Each bad session gets
 * its own error or timeout; afterwards a fresh session still works and the
 * relay still answers. Timeouts are configured in the 100 ms range so the
 * file runs in about a second.
 */

import assert from "node:assert/strict";
import { TestImapClient } from "./support/imap_client.ts";
import { assertRelayAnswers, type Stack, startStack, TLS_DIR } from "./support/imap_stack.ts";

const IROH = "/shared/vendor/deltachat/irohrelay";

function toml(relayUrl: string, limits: string): string {
  return `
[imap]
bind_addr = "127.0.0.1:0"
tls_bind_addr = "127.0.0.1:0"
cert_path = "${TLS_DIR}cert.pem"
key_path = "${TLS_DIR}key.pem"
iroh_relay_url = "${relayUrl}"
[imap.limits]
max_line_bytes = 1024
max_literal_bytes = 2048
failed_login_delay_secs = 0
${limits}
`;
}

/** A fresh session logs in and reads the relay URL: proof the listener still serves. */
async function assertHealthy(s: Stack): Promise<void> {
  const c = await TestImapClient.connect({ port: s.imap.addrs.plain!.port });
  assert.match((await c.response())!.text, /^\* OK /);
  assert.match((await c.command("h1", "LOGIN u p")).at(-1)!.text, /^h1 OK /);
  const md = await c.command("h2", `GETMETADATA "" ${IROH}`);
  assert.equal(md[0]!.text, `* METADATA "" (${IROH} "${s.relayUrl}")\r\n`);
  await c.close();
  await assertRelayAnswers(s.relayUrl);
}

type Kind = "overlong" | "literal-sync" | "literal-nonsync" | "garbage" | "half-sent";

/** Runs one misbehaving session to its end; returns what happened. */
async function misbehave(port: number, kind: Kind, i: number): Promise<string> {
  const c = await TestImapClient.connect({ port, timeoutMs: 3000 });
  try {
    assert.match((await c.response())!.text, /^\* OK /);
    switch (kind) {
      case "overlong": {
        await c.send(`o${i} NOOP ${"x".repeat(5000)}\r\n`);
        assert.equal((await c.response())!.text, `o${i} BAD Line too long\r\n`);
        // The stream resynchronised: the session still works.
        assert.equal((await c.command(`p${i}`, "NOOP")).at(-1)!.text, `p${i} OK NOOP completed\r\n`);
        return "bad-then-ok";
      }
      case "literal-sync": {
        await c.send(`l${i} LOGIN {4000000000}\r\n`);
        assert.equal((await c.response())!.text, `l${i} BAD Literal too large: at most 2048 bytes\r\n`);
        assert.equal((await c.command(`m${i}`, "NOOP")).at(-1)!.text, `m${i} OK NOOP completed\r\n`);
        return "bad-then-ok";
      }
      case "literal-nonsync": {
        await c.send(`n${i} APPEND INBOX {99999999+}\r\nAAAA`);
        assert.equal((await c.response())!.text, `n${i} BAD Literal too large: at most 2048 bytes\r\n`);
        assert.equal((await c.response())!.text, "* BYE Literal too large: at most 2048 bytes\r\n");
        assert.equal(await c.rest(), "");
        return "closed";
      }
      case "garbage": {
        const junk = new Uint8Array(30 * 8);
        for (let k = 0; k < junk.length; k++) junk[k] = (k * 97 + i) % 251;
        for (let k = 7; k < junk.length; k += 8) junk[k] = 0x0a;
        await c.send(junk);
        const text = await c.rest();
        const bads = text.split("\r\n").filter((l) => / BAD /.test(l)).length;
        assert.equal(bads, 20, text);
        assert.ok(text.endsWith("* BYE Too many invalid commands\r\n"), text);
        return "closed";
      }
      case "half-sent": {
        await c.send(`h${i} LOGIN alice`);
        assert.equal((await c.response())!.text, "* BYE Login timeout\r\n");
        assert.equal(await c.rest(), "");
        return "timeout";
      }
    }
  } finally {
    await c.close();
  }
}

Deno.test("200 concurrent misbehaving sessions each get their own error or timeout, and the listener keeps serving", async () => {
  // All 200 come from 127.0.0.1: lift the per-source limits, which are not what this test is about.
  const s = await startStack((url) =>
    toml(
      url,
      "login_timeout_secs = 0.3\nidle_timeout_secs = 5\nmax_sessions_per_source = 1000\nsource_connects_burst = 1000",
    )
  );
  try {
    const kinds: Kind[] = ["overlong", "literal-sync", "literal-nonsync", "garbage", "half-sent"];
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => misbehave(s.imap.addrs.plain!.port, kinds[i % kinds.length]!, i)),
    );
    const ms = performance.now() - t0;
    const count = (r: string) => results.filter((x) => x === r).length;
    assert.equal(count("bad-then-ok"), 80);
    assert.equal(count("closed"), 80);
    assert.equal(count("timeout"), 40);
    assert.ok(ms < 5000, `took ${ms} ms`);
    await assertHealthy(s);
    const m = s.imap.metrics();
    assert.match(m, /^imap_timeouts_total 40$/m);
    assert.match(m, /^imap_limit_errors_total 120$/m);
    assert.match(m, /^imap_sessions_total 201$/m);
    assert.match(m, /^imap_disconnects_by_reason_total\{reason="login_timeout"\} 40$/m);
    assert.match(m, /^imap_disconnects_by_reason_total\{reason="literal_too_large"\} 40$/m);
    assert.match(m, /^imap_disconnects_by_reason_total\{reason="too_many_errors"\} 40$/m);
  } finally {
    await s.close();
  }
});

Deno.test("idle timeout closes a logged-in session that goes quiet", async () => {
  const s = await startStack((url) => toml(url, "login_timeout_secs = 5\nidle_timeout_secs = 0.15"));
  try {
    const c = await TestImapClient.connect({ port: s.imap.addrs.plain!.port });
    await c.response();
    await c.command("a", "LOGIN u p");
    const t0 = performance.now();
    await c.send(`b GETMETADATA "" (${IROH}`); // half a command, then silence
    assert.equal((await c.response())!.text, "* BYE Autologout; idle for too long\r\n");
    assert.ok(performance.now() - t0 >= 100);
    assert.equal(await c.rest(), "");
    await c.close();
    await assertHealthy(s);
  } finally {
    await s.close();
  }
});

Deno.test("max_sessions: connections over the cap get * BYE; a freed slot is reused", async () => {
  const s = await startStack((url) => toml(url, "max_sessions = 3"));
  try {
    const port = s.imap.addrs.plain!.port;
    const held = await Promise.all([1, 2, 3].map(() => TestImapClient.connect({ port })));
    for (const c of held) assert.match((await c.response())!.text, /^\* OK /);
    const over = await TestImapClient.connect({ port });
    assert.equal(await over.rest(), "* BYE Too many connections, try again later\r\n");
    await over.close();
    await held[0]!.command("x", "LOGOUT");
    await held[0]!.rest();
    await held[0]!.close();
    // The slot frees when the server side finishes; retry a bounded number of times.
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      const c = await TestImapClient.connect({ port });
      ok = (await c.response())!.text.startsWith("* OK");
      if (ok) await c.command("y", "LOGOUT");
      await c.close();
    }
    assert.ok(ok, "a new session fits after one left");
    assert.match(s.imap.metrics(), /^imap_sessions_refused_total [1-9]/m);
    for (const c of held.slice(1)) await c.close();
  } finally {
    await s.close();
  }
});

Deno.test("plain text, garbage and early disconnects on the TLS port end only those sessions", async () => {
  const s = await startStack((url) => toml(url, "login_timeout_secs = 0.5"));
  try {
    const tlsPort = s.imap.addrs.tls!.port;
    const plainOnTls = await Deno.connect({ port: tlsPort });
    await plainOnTls.write(new TextEncoder().encode("a LOGIN u p\r\n"));
    const buf = new Uint8Array(256);
    const n = await plainOnTls.read(buf).catch(() => null);
    assert.ok(n === null || n > 0, "the server answers with a TLS alert or closes");
    plainOnTls.close();
    const cut = await Deno.connect({ port: s.imap.addrs.plain!.port });
    await cut.write(new TextEncoder().encode("a LOGIN {100}\r\nonly part of it"));
    cut.close();
    await assertHealthy(s);
  } finally {
    await s.close();
  }
});
