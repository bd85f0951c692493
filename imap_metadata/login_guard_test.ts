import assert from "node:assert/strict";
import { CheckQueue, FailureBackoff, quoteForLog, sourceKey } from "./login_guard.ts";

/** A check that finishes when the test says so. */
function gate(): { work: () => Promise<boolean>; release: () => void; started: boolean } {
  const d = Promise.withResolvers<boolean>();
  const g = {
    started: false,
    work: () => {
      g.started = true;
      return d.promise;
    },
    release: () => d.resolve(true),
  };
  return g;
}

const live = () => new AbortController().signal;
const tick = () => new Promise<void>((r) => setTimeout(r, 0));

Deno.test("CheckQueue runs at most `concurrency` checks and refuses past `maxPending`", async () => {
  const q = new CheckQueue({ concurrency: 2, maxPending: 4 });
  const gates = Array.from({ length: 6 }, gate);
  // Six sources, so the per-source share (1 of 4) does not interfere.
  const runs = gates.map((g, i) => q.run(`s${i}`, live(), g.work));
  await tick();
  assert.deepEqual(gates.map((g) => g.started), [true, true, false, false, false, false]);
  assert.equal(q.running, 2);
  assert.equal(q.pending, 4);
  assert.equal(await q.run("other", live(), () => Promise.resolve(true)), "unavailable");
  gates[0]!.release();
  await tick();
  assert.equal(gates[2]!.started, true);
  for (const g of gates) g.release();
  assert.deepEqual(await Promise.all(runs), [true, true, true, true, true, true]);
  assert.equal(q.running + q.pending, 0);
});

Deno.test("CheckQueue serves sources in turn and caps one source's share", async () => {
  const q = new CheckQueue({ concurrency: 1, maxPending: 8 });
  const order: string[] = [];
  const first = gate();
  const head = q.run("attacker", live(), first.work);
  const results: Promise<unknown>[] = [];
  // The attacker queues as many as it may (a quarter of 8 = 2), then is refused; the user arrives last.
  for (let i = 0; i < 4; i++) {
    results.push(q.run("attacker", live(), () => (order.push(`a${i}`), Promise.resolve(false))));
  }
  results.push(q.run("user", live(), () => (order.push("user"), Promise.resolve(true))));
  assert.equal(await results[2], "unavailable");
  assert.equal(await results[3], "unavailable");
  first.release();
  await Promise.all([head, ...results]);
  assert.deepEqual(order, ["a0", "user", "a1"], "the user did not wait behind the attacker's queue");
});

Deno.test("CheckQueue drops a waiting check when its session ends or the queue closes", async () => {
  const q = new CheckQueue({ concurrency: 1, maxPending: 8 });
  const running = gate();
  const r0 = q.run("a", live(), running.work);
  const ended = new AbortController();
  let ran = false;
  const r1 = q.run("b", ended.signal, () => (ran = true, Promise.resolve(true)));
  const r2 = q.run("c", live(), () => (ran = true, Promise.resolve(true)));
  ended.abort();
  assert.equal(await r1, "aborted");
  assert.equal(q.pending, 1);
  q.close();
  assert.equal(await r2, "aborted");
  assert.equal(await q.run("d", live(), () => Promise.resolve(true)), "aborted");
  running.release();
  assert.equal(await r0, true);
  assert.equal(ran, false);
});

Deno.test("FailureBackoff grows per source, forgets, and keeps a bounded map", () => {
  const b = new FailureBackoff({ freeFailures: 2, baseMs: 100, maxMs: 800, forgetMs: 10_000, maxSources: 3 });
  const waits: number[] = [];
  for (let i = 0; i < 7; i++) {
    b.failed("x", 1000);
    waits.push(b.waitMs("x", 1000));
  }
  assert.deepEqual(waits, [0, 0, 100, 200, 400, 800, 800]);
  assert.equal(b.waitMs("x", 1500), 300, "time already waited counts");
  assert.equal(b.waitMs("y", 1000), 0, "other sources are not slowed");
  assert.equal(b.waitMs("x", 11_000), 0, "forgotten after forgetMs");
  for (const s of ["p", "q", "r", "s"]) for (let i = 0; i < 3; i++) b.failed(s, 2000);
  assert.ok(b.size <= 3);
  assert.equal(b.waitMs("p", 2000), 0, "the oldest source was evicted");
  assert.equal(b.waitMs("s", 2000), 100);
  b.succeeded("s");
  assert.equal(b.waitMs("s", 2000), 0);
});

Deno.test("quoteForLog() keeps a hostile user name on one line and inside its quotes", () => {
  assert.equal(quoteForLog("alice"), '"alice"');
  const forged = 'x" source=10.0.0.1\n2026-01-01T00:00:00Z INFO imap: imap login failed: user="root';
  const q = quoteForLog(forged, 200);
  assert.ok(!q.includes("\n") && !q.includes("\r"));
  assert.equal(q.slice(1, -1).replaceAll('\\"', "").includes('"'), false, "no unescaped quote inside");
  assert.equal(quoteForLog("a\\b"), '"a\\\\b"');
  assert.equal(quoteForLog("é\u2028\x7f"), '"\\xe9\\u{2028}\\x7f"');
  assert.equal(quoteForLog("y".repeat(100)), `"${"y".repeat(64)}..."`);
});

Deno.test("sourceKey() groups IPv6 by /64 and unwraps IPv4-mapped addresses", () => {
  assert.equal(sourceKey("192.0.2.7"), "192.0.2.7");
  assert.equal(sourceKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(sourceKey("2001:db8:1:2::9"), sourceKey("2001:0db8:0001:0002:ffff:1:2:3"));
  assert.equal(sourceKey("::1"), "0:0:0:0::/64");
  assert.equal(sourceKey("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(sourceKey("[fe80::1%eth0]"), "fe80:0:0:0::/64");
});

Deno.test("CheckQueue: when full, a new source takes a place from the source holding the most", async () => {
  const q = new CheckQueue({ concurrency: 1, maxPending: 4 });
  const first = gate();
  const head = q.run("busy", live(), first.work);
  const order: string[] = [];
  const run = (src: string, name: string) => q.run(src, live(), () => (order.push(name), Promise.resolve(true)));
  // Four sources hold one place each (a source may hold a quarter of 4): a fifth source finds no one to displace.
  const a = [run("a", "a0"), run("b", "b0"), run("c", "c0"), run("d", "d0")];
  assert.equal(await run("e", "e0"), "unavailable", "nobody holds two more than a newcomer");
  q.close();
  first.release();
  await Promise.all([head, ...a]);

  const q2 = new CheckQueue({ concurrency: 1, maxPending: 8 });
  const g2 = gate();
  const head2 = q2.run("busy", live(), g2.work);
  const crowd = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => q2.run(`attacker${i % 4}`, live(), () => Promise.resolve(false)));
  assert.equal(q2.pending, 8);
  const user = q2.run("user", live(), () => Promise.resolve(true));
  assert.equal(q2.pending, 8, "the user took a place");
  g2.release();
  assert.equal(await user, true);
  const outcomes = await Promise.all(crowd);
  assert.equal(outcomes.filter((o) => o === "unavailable").length, 1, "one attacker place was given up");
  await head2;
});

Deno.test("CheckQueue: a source without failures is served first and displaces a failing one when full", async () => {
  const q = new CheckQueue({ concurrency: 1, maxPending: 4 });
  const g = gate();
  const head = q.run("busy", live(), g.work);
  const order: string[] = [];
  const run = (src: string, favoured: boolean) =>
    q.run(src, live(), () => (order.push(src), Promise.resolve(true)), favoured);
  // Four failing sources, one place each: no one holds two more than anyone, yet the clean source gets in.
  const crowd = ["f1", "f2", "f3", "f4"].map((s) => run(s, false));
  assert.equal(await run("f5", false), "unavailable");
  const user = run("user", true);
  assert.equal(q.pending, 4);
  g.release();
  assert.equal(await user, true);
  const outcomes = await Promise.all(crowd);
  assert.deepEqual(outcomes, [true, true, true, "unavailable"], "the newest failing check gave up its place");
  assert.deepEqual(order, ["user", "f1", "f2", "f3"]);
  await head;
});

Deno.test("FailureBackoff.hasFailures() tells clean sources from failing ones", () => {
  const b = new FailureBackoff({ freeFailures: 3, baseMs: 100, maxMs: 800, forgetMs: 10_000, maxSources: 3 });
  assert.equal(b.hasFailures("x", 0), false);
  b.failed("x", 0);
  assert.equal(b.hasFailures("x", 5000), true, "even a free failure counts");
  assert.equal(b.hasFailures("x", 10_000), false, "forgotten");
});
