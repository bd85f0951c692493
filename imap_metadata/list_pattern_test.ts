import assert from "node:assert/strict";
import { listMatch, type MatchStats } from "./list_pattern.ts";

Deno.test("listMatch() follows RFC 3501 wildcards", () => {
  assert.ok(listMatch("*", "INBOX"));
  assert.ok(listMatch("%", "INBOX"));
  assert.ok(listMatch("inbox", "INBOX"), "case-insensitive");
  assert.ok(listMatch("I*X", "INBOX"));
  assert.ok(listMatch("*%*%", "INBOX"));
  assert.ok(listMatch("", ""));
  assert.ok(!listMatch("", "INBOX"));
  assert.ok(!listMatch("INBOX*Z", "INBOX"));
  assert.ok(!listMatch("INBO", "INBOX"));
  assert.ok(listMatch("a/*", "a/b/c"), "* crosses /");
  assert.ok(!listMatch("a/%", "a/b/c"), "% stops at /");
  assert.ok(listMatch("a/%/c", "a/b/c"));
  assert.ok(listMatch("%/%/%", "a/b/c"));
  assert.ok(!listMatch("%", "a/b"));
  assert.ok(listMatch("a%", "a"), "% matches nothing too");
  assert.ok(listMatch("[.]+?", "[.]+?"), "regex characters are literal");
  assert.ok(!listMatch(".", "x"));
});

/** Steps for a pattern against INBOX, the only name the server has. */
function steps(pattern: string): number {
  const s: MatchStats = { steps: 0 };
  listMatch(pattern, "INBOX", s);
  return s.steps;
}

Deno.test("listMatch() work is linear in the pattern (the regex was exponential)", () => {
  // The adversarial run's patterns: 85 stars then Z froze the event loop 16 s; 60 % took 1.75 s.
  for (const [unit, tail] of [["*", "Z"], ["%", "Z"], ["*%", "Z"], ["%", ""], ["*", ""]] as const) {
    for (const n of [85, 1_000, 64 * 1024]) {
      const p = unit.repeat(Math.ceil(n / unit.length)) + tail;
      assert.ok(steps(p) <= p.length * 6, `${unit}×${n}${tail}: ${steps(p)} steps`);
    }
  }
  assert.equal(listMatch("*".repeat(85) + "Z", "INBOX"), false);
  assert.equal(listMatch("%".repeat(60), "INBOX"), true);
  // A pattern that dies early stops early.
  assert.ok(steps("Q" + "*".repeat(100_000)) <= 12);
});
