import assert from "node:assert/strict";
import { StunRateLimit } from "./rate_limit.ts";

Deno.test("StunRateLimit allows a burst per source, then its rate; other sources are not affected", () => {
  const l = new StunRateLimit({ perSecond: 2, burst: 3, globalPerSecond: 1000, maxSources: 10 }, 0);
  assert.deepEqual([1, 2, 3, 4].map(() => l.allow("10.0.0.1", 0)), [true, true, true, false]);
  assert.equal(l.allow("10.0.0.2", 0), true);
  assert.equal(l.allow("10.0.0.1", 499), false);
  assert.equal(l.allow("10.0.0.1", 500), true);
});

Deno.test("StunRateLimit keeps at most maxSources and reuses full buckets", () => {
  const l = new StunRateLimit({ perSecond: 1, burst: 1, globalPerSecond: 1e9, maxSources: 100 }, 0);
  for (let i = 0; i < 1000; i++) l.allow(`10.0.${i >> 8}.${i & 255}`, 0);
  assert.equal(l.size, 100, "a spoofed flood from many sources costs no more memory");
  assert.equal(l.allow("192.0.2.1", 10), false, "table full of fresh buckets: refused");
  assert.equal(l.allow("192.0.2.1", 2000), true, "after they refill they are pruned");
  assert.ok(l.size <= 100);
});

Deno.test("StunRateLimit caps the total rate over all sources", () => {
  const l = new StunRateLimit({ perSecond: 10, burst: 10, globalPerSecond: 5, maxSources: 1000 }, 0);
  let ok = 0;
  for (let i = 0; i < 50; i++) if (l.allow(`10.0.0.${i}`, 0)) ok++;
  assert.equal(ok, 5);
});
