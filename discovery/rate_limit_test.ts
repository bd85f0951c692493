import assert from "node:assert/strict";
import { clientKey, PutRateLimiter } from "./rate_limit.ts";

Deno.test("PutRateLimiter: a burst of 2, then one PUT every 4 s, per key", () => {
  const l = new PutRateLimiter();
  assert.equal(l.take("a", 0), 0);
  assert.equal(l.take("a", 0), 0);
  assert.equal(l.take("a", 0), 4000);
  assert.equal(l.take("b", 0), 0);
  assert.equal(l.take("a", 3999), 1);
  assert.equal(l.take("a", 4000), 0);
  assert.equal(l.take("a", 4000), 4000);
  assert.equal(l.take("a", 12_000), 0);
  assert.equal(l.take("a", 12_000), 0);
  assert.equal(l.take("a", 12_000), 4000);
});

Deno.test("PutRateLimiter keeps at most maxKeys keys", () => {
  const l = new PutRateLimiter({ maxKeys: 100 });
  for (let i = 0; i < 1000; i++) l.take(`ip${i}`, 0);
  assert.equal(l.size, 100);
});

Deno.test("clientKey(): simple uses the peer; smart reads X-Forwarded-For, X-Real-IP, Forwarded", () => {
  const h = (o: Record<string, string>) => new Headers(o);
  assert.equal(clientKey("simple", h({ "x-forwarded-for": "1.1.1.1" }), "9.9.9.9"), "9.9.9.9");
  assert.equal(clientKey("smart", h({ "x-forwarded-for": "1.1.1.1, 2.2.2.2" }), "9.9.9.9"), "1.1.1.1");
  assert.equal(clientKey("smart", h({ "x-real-ip": "3.3.3.3" }), "9.9.9.9"), "3.3.3.3");
  assert.equal(clientKey("smart", h({ forwarded: 'for="[2001:db8::1]:443";proto=https' }), "9.9.9.9"), "2001:db8::1");
  assert.equal(clientKey("smart", h({ forwarded: "for=4.4.4.4:80" }), "9.9.9.9"), "4.4.4.4");
  assert.equal(clientKey("smart", h({}), "9.9.9.9"), "9.9.9.9");
});
