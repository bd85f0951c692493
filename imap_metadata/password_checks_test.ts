import assert from "node:assert/strict";
import { createLogger } from "../log/mod.ts";
import { FailureBackoff } from "./login_guard.ts";
import { ImapMetrics } from "./metrics.ts";
import { hashParameters, hashPassword, verifyPassword } from "./password.ts";
import { PasswordChecks, type PasswordChecksOptions } from "./password_checks.ts";

const HASH = await hashPassword("right", { iterations: 100_000 });
const USERS = new Map([["alice", HASH]]);
const live = () => new AbortController().signal;

function setup(extra: Partial<PasswordChecksOptions> = {}) {
  const lines: string[] = [];
  const metrics = new ImapMetrics();
  const log = createLogger({ write: (l) => lines.push(l) }).child("imap");
  const checks = new PasswordChecks({
    users: USERS,
    limits: { concurrency: 2, maxPending: 8 },
    log,
    metrics,
    ...extra,
  });
  return { checks, lines, metrics };
}

Deno.test("PasswordChecks gives unknown users the same PBKDF2 work as a wrong password", async () => {
  const work: string[] = [];
  const verify = (pw: string, hash: string) => {
    const p = hashParameters(hash);
    work.push(`${p?.iterations}x${p?.hashBytes}`);
    return verifyPassword(pw, hash);
  };
  const { checks } = setup({ verify });
  assert.equal(await checks.check("alice", "wrong", "192.0.2.1", live()), "failed");
  assert.equal(await checks.check("nobody", "wrong", "192.0.2.2", live()), "failed");
  assert.equal(await checks.check("nobody", "right", "192.0.2.3", live()), "failed", "no dummy-hash login");
  assert.equal(await checks.check("alice", "right", "192.0.2.4", live()), "ok");
  assert.deepEqual(work, ["100000x32", "100000x32", "100000x32", "100000x32"]);
});

Deno.test("PasswordChecks logs each failure once, fail2ban-style, with the user escaped", async () => {
  const { checks, lines, metrics } = setup();
  await checks.check('eve"\n2026 INFO forged', "x", "192.0.2.9", live());
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /INFO +imap: imap login failed: user="eve\\"\\x0a2026 INFO forged" source=192\.0\.2\.9$/);
  assert.equal(metrics.c.loginFailures, 1);
  await checks.check("alice", "right", "192.0.2.9", live());
  assert.equal(lines.length, 1, "successes are not logged here");
});

Deno.test("PasswordChecks refuses at once when the queue is full and counts it", async () => {
  const never = Promise.withResolvers<boolean>();
  const { checks, metrics } = setup({ verify: () => never.promise });
  const ends = new AbortController();
  // 2 running + 8 waiting from ten sources fill everything.
  const held = Array.from({ length: 10 }, (_, i) => checks.check("alice", "x", `192.0.2.${i}`, ends.signal));
  const t0 = performance.now();
  assert.equal(await checks.check("alice", "right", "198.51.100.1", live()), "unavailable");
  assert.ok(performance.now() - t0 < 1000);
  assert.equal(metrics.c.passwordChecksRejected, 1);
  assert.deepEqual(checks.load, { running: 2, pending: 8 });
  ends.abort();
  assert.deepEqual(new Set(await Promise.all(held)), new Set(["aborted"]));
  never.resolve(false);
});

Deno.test("PasswordChecks.close() ends running and waiting checks at once", async () => {
  const never = Promise.withResolvers<boolean>();
  const { checks } = setup({ verify: () => never.promise });
  const pending = Array.from({ length: 10 }, (_, i) => checks.check("alice", "x", `192.0.2.${i}`, live()));
  checks.close();
  assert.deepEqual(new Set(await Promise.all(pending)), new Set(["aborted"]));
  assert.equal(await checks.check("alice", "right", "192.0.2.1", live()), "aborted");
  never.resolve(false);
});

Deno.test("PasswordChecks makes a failing source wait before its next check, and only that source", async () => {
  let now = 0;
  const backoff = new FailureBackoff({
    freeFailures: 1,
    baseMs: 60_000,
    maxMs: 60_000,
    forgetMs: 600_000,
    maxSources: 10,
  });
  const { checks } = setup({ backoff, now: () => now });
  await checks.check("alice", "x", "192.0.2.1", live());
  await checks.check("alice", "x", "192.0.2.1", live());
  // The third check from that source would wait a minute: a session that ends meanwhile stops waiting.
  const ends = new AbortController();
  const waiting = checks.check("alice", "right", "192.0.2.1", ends.signal);
  assert.equal(await checks.check("alice", "right", "192.0.2.2", live()), "ok", "another source is not slowed");
  ends.abort();
  assert.equal(await waiting, "aborted");
  now = 60_001;
  assert.equal(await checks.check("alice", "right", "192.0.2.1", live()), "ok");
});
