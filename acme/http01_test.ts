import assert from "node:assert/strict";
import { Http01Challenges } from "./http01.ts";

const at = (path: string, method = "GET") => new Request(`http://relay.example.org${path}`, { method });

Deno.test("Http01Challenges answers only pending tokens, only to GET/HEAD, and forgets removed ones", async () => {
  const c = new Http01Challenges();
  c.add("tok-1_A", "tok-1_A.thumb");
  const ok = c.handle(at("/.well-known/acme-challenge/tok-1_A"));
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), "tok-1_A.thumb");
  for (
    const req of [
      at("/.well-known/acme-challenge/other"),
      at("/.well-known/acme-challenge/"),
      at("/.well-known/acme-challenge/tok-1_A/x"),
      at("/.well-known/acme-challenge/tok-1_A", "POST"),
    ]
  ) {
    const res = c.handle(req);
    await res.body?.cancel();
    assert.equal(res.status, 404, req.url);
  }
  c.remove("tok-1_A");
  const gone = c.handle(at("/.well-known/acme-challenge/tok-1_A"));
  await gone.body?.cancel();
  assert.equal(gone.status, 404);
  assert.equal(c.served, 1);
  assert.throws(() => c.add("../etc", "x"), RangeError);
});
