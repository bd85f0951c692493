import assert from "node:assert/strict";
import { ByteBucket } from "./rate_limit.ts";

Deno.test("ByteBucket starts full and lets a frame up to the burst pass at once", () => {
  const b = new ByteBucket(50, 50, 0);
  assert.equal(b.delayFor(50, 0), 0);
  assert.equal(b.delayFor(1, 0), 0);
});

Deno.test("ByteBucket holds the next 0.35 frame after a 50-byte frame at 50 B/s for about a second (test_rate_limit @v0.35.0)", () => {
  // 0.35: burst defaults to the rate; a frame costs payload + 5.
  const b = new ByteBucket(50, 50, 0);
  const cost = 50 + 5;
  assert.equal(b.delayFor(cost, 0), 0);
  b.take(cost, 0);
  const wait = b.delayFor(cost, 0);
  assert.ok(wait > 100, `held ${wait} ms`);
  assert.equal(wait, 1100);
  assert.ok(b.delayFor(cost, 500) > 0, "still held after 500 ms");
  assert.equal(b.delayFor(cost, 1100), 0, "passes after the wait");
});

Deno.test("ByteBucket with a 1.x burst of rate/10 delays the second 50-byte frame (test_rate_limit @v1.0.3)", () => {
  const b = new ByteBucket(50, 5, 0);
  assert.equal(b.delayFor(56, 0), 0, "a frame larger than the burst passes when the bucket is full");
  b.take(56, 0);
  assert.equal(b.delayFor(56, 0), Math.ceil(((5 + 51) * 1000) / 50));
});

Deno.test("ByteBucket refills at the configured rate and never above the burst", () => {
  const b = new ByteBucket(1000, 100, 0);
  b.take(100, 0);
  assert.equal(b.delayFor(100, 0), 100);
  assert.equal(b.delayFor(50, 50), 0, "50 ms refilled 50 bytes");
  assert.equal(b.delayFor(100, 10_000), 0);
  b.take(100, 10_000);
  assert.equal(b.delayFor(100, 10_000), 100, "a long idle period refilled only up to the burst");
});

Deno.test("ByteBucket ignores a clock that goes backwards", () => {
  const b = new ByteBucket(100, 100, 1000);
  b.take(100, 1000);
  assert.equal(b.delayFor(100, 500), 1000);
  assert.equal(b.delayFor(100, 2000), 0);
});

Deno.test("ByteBucket flows at the set rate over many frames (test_ratelimiter)", () => {
  const rate = 10 * 1024;
  const b = new ByteBucket(rate, rate / 10, 0);
  let now = 0;
  let sent = 0;
  const frame = 1500;
  for (let i = 0; i < 1000; i++) {
    now += b.delayFor(frame, now);
    b.take(frame, now);
    sent += frame;
  }
  const achieved = sent / (now / 1000);
  assert.ok(Math.abs(achieved - rate) / rate < 0.01, `${achieved.toFixed(0)} B/s for a ${rate} B/s limit`);
});
